package schemas_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/schemas"
)

func TestAccessors(t *testing.T) {
	at := time.UnixMilli(-1001).UTC()
	rec := map[string]any{
		"double":         2.5,
		"float":          float32(0.5),
		"long":           int64(-42),
		"int":            int32(7),
		"goint":          12,
		"string":         "u-1",
		"bool":           true,
		"bytes":          []byte("b"),
		"ts":             at,
		"nullable":       map[string]any{"double": 9.75},
		"nullable_ts":    map[string]any{"long.timestamp-millis": at},
		"nullable_long":  map[string]any{"long": int64(5)},
		"null":           nil,
		"null_in_union":  map[string]any{"string": nil},
		"nested_record":  map[string]any{"a": 1, "b": 2},
		"nullable_empty": map[string]any{},
		"nullable_bool":  map[string]any{"boolean": false},
	}
	type result struct {
		val  any
		kind error
	}
	tests := []struct {
		field       string
		float, intg result
		str         result
	}{
		{"double", result{2.5, nil}, result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}},
		{"float", result{0.5, nil}, result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}},
		{"long", result{-42.0, nil}, result{int64(-42), nil}, result{"-42", nil}},
		{"int", result{7.0, nil}, result{int64(7), nil}, result{"7", nil}},
		{"goint", result{12.0, nil}, result{int64(12), nil}, result{"12", nil}},
		{"string", result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}, result{"u-1", nil}},
		{"bool", result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}},
		{"bytes", result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}},
		{"ts", result{nil, schemas.ErrWrongType}, result{at.UnixMilli(), nil}, result{nil, schemas.ErrWrongType}},
		{"nullable", result{9.75, nil}, result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}},
		{"nullable_ts", result{nil, schemas.ErrWrongType}, result{at.UnixMilli(), nil}, result{nil, schemas.ErrWrongType}},
		{"nullable_long", result{5.0, nil}, result{int64(5), nil}, result{"5", nil}},
		{"null", result{nil, schemas.ErrNullField}, result{nil, schemas.ErrNullField}, result{nil, schemas.ErrNullField}},
		{"null_in_union", result{nil, schemas.ErrNullField}, result{nil, schemas.ErrNullField}, result{nil, schemas.ErrNullField}},
		{"nested_record", result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}},
		{"nullable_empty", result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}},
		{"absent", result{nil, schemas.ErrMissingField}, result{nil, schemas.ErrMissingField}, result{nil, schemas.ErrMissingField}},
		{"nullable_bool", result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}, result{nil, schemas.ErrWrongType}},
	}
	// Bool accepts booleans only.
	bools := map[string]result{"bool": {true, nil}, "nullable_bool": {false, nil}, "null": {nil, schemas.ErrNullField}, "null_in_union": {nil, schemas.ErrNullField}, "absent": {nil, schemas.ErrMissingField}}
	check := func(t *testing.T, name string, got any, err error, want result) {
		t.Helper()
		if want.kind != nil {
			var fe *schemas.FieldError
			if !errors.Is(err, want.kind) || !errors.As(err, &fe) || fe.Field != name {
				t.Fatalf("err = %v, want a %v FieldError for %q", err, want.kind, name)
			}
			if !strings.Contains(err.Error(), `field "`+name+`"`) {
				t.Fatalf("message %q does not name the field", err)
			}
			return
		}
		if err != nil || got != want.val {
			t.Fatalf("got %#v, %v; want %#v", got, err, want.val)
		}
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			f, err := schemas.Float(rec, tt.field)
			t.Run("Float", func(t *testing.T) { check(t, tt.field, f, err, tt.float) })
			i, err := schemas.Int(rec, tt.field)
			t.Run("Int", func(t *testing.T) { check(t, tt.field, i, err, tt.intg) })
			s, err := schemas.String(rec, tt.field)
			t.Run("String", func(t *testing.T) { check(t, tt.field, s, err, tt.str) })
			b, err := schemas.Bool(rec, tt.field)
			want, ok := bools[tt.field]
			if !ok {
				want = result{nil, schemas.ErrWrongType}
			}
			t.Run("Bool", func(t *testing.T) { check(t, tt.field, b, err, want) })
		})
	}
}

func TestAccessorMessagesSayWhatWasWanted(t *testing.T) {
	rec := map[string]any{"amount": "12", "user_id": true, "ts": 1.5}
	for _, c := range []struct {
		err  error
		want string
	}{
		{second(schemas.Float(rec, "amount")), `field "amount": want number, got string`},
		{second(schemas.String(rec, "user_id")), `field "user_id": want string, got boolean`},
		{second(schemas.Int(rec, "ts")), `field "ts": want integer, got double`},
		{second(schemas.Int(rec, "nope")), `field "nope": missing`},
	} {
		if c.err == nil || c.err.Error() != c.want {
			t.Errorf("err = %v, want %q", c.err, c.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }
