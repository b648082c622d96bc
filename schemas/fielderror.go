package schemas

import (
	"errors"
	"strconv"
)

// Kinds of field problem reported by FromJSON and by the accessors Float, Int
// and String. Each is wrapped in a *FieldError naming the field; check the
// kind with errors.Is and get the field with errors.As.
var (
	// ErrMissingField: the field is absent (and, for FromJSON, the schema
	// gives no default).
	ErrMissingField = errors.New("missing")
	// ErrNullField: the field is null where a value is needed.
	ErrNullField = errors.New("null")
	// ErrWrongType: the value does not have, or does not fit, the wanted type
	// (including non-integral or out-of-range numbers).
	ErrWrongType = errors.New("wrong type")
	// ErrUnknownField: FromJSON got a field the schema does not declare, or
	// the same field twice.
	ErrUnknownField = errors.New("unknown field")
)

// FieldError is a problem with one field of a record. Its message reads
// `field "amount": want double, got string "abc"`.
type FieldError struct {
	Field  string // field name
	Kind   error  // ErrMissingField, ErrNullField, ErrWrongType, ErrUnknownField or errors.ErrUnsupported
	Detail string // what was wanted and what was found
}

func (e *FieldError) Error() string { return "field " + strconv.Quote(e.Field) + ": " + e.Detail }

// Unwrap returns e.Kind, so errors.Is(err, ErrWrongType) works.
func (e *FieldError) Unwrap() error { return e.Kind }

func fieldErr(field string, kind error, detail string) *FieldError {
	return &FieldError{Field: field, Kind: kind, Detail: detail}
}
