package schemas

import (
	"fmt"
	"strconv"
	"time"
)

// Float, Int, String and Bool read one field of a native record (from
// Set.Decode or FromJSON). They unwrap a nullable union's
// map[string]any{branch: v}. Errors are *FieldError values naming the field,
// of kind ErrMissingField, ErrNullField or ErrWrongType. They do not allocate
// on success, except String formatting a number.

// Float returns field name as a float64. It accepts double, float, int and
// long values (a long beyond 2^53 loses precision).
func Float(rec map[string]any, name string) (float64, error) {
	v, err := field(rec, name)
	if err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case int32:
		return float64(x), nil
	case int:
		return float64(x), nil
	}
	return 0, fieldErr(name, ErrWrongType, "want number, got "+nativeKind(v))
}

// Int returns field name as an int64. It accepts long and int values, and a
// time.Time (what goavro decodes a timestamp-millis long to), which it
// converts to epoch milliseconds: Int gives the same value for a decoded
// record as for the FromJSON record it was encoded from. Floating-point
// values are refused, even integral ones.
func Int(rec map[string]any, name string) (int64, error) {
	v, err := field(rec, name)
	if err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int:
		return int64(x), nil
	case time.Time:
		return x.UnixMilli(), nil
	}
	return 0, fieldErr(name, ErrWrongType, "want integer, got "+nativeKind(v))
}

// String returns field name as a string. A long or int is formatted in base
// 10, so entity keys may be numbers.
func String(rec map[string]any, name string) (string, error) {
	v, err := field(rec, name)
	if err != nil {
		return "", err
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int:
		return strconv.Itoa(x), nil
	}
	return "", fieldErr(name, ErrWrongType, "want string, got "+nativeKind(v))
}

// Bool returns field name as a bool. It accepts boolean values only.
func Bool(rec map[string]any, name string) (bool, error) {
	v, err := field(rec, name)
	if err != nil {
		return false, err
	}
	if x, ok := v.(bool); ok {
		return x, nil
	}
	return false, fieldErr(name, ErrWrongType, "want boolean, got "+nativeKind(v))
}

// field returns the value of name, unwrapping a nullable union.
func field(rec map[string]any, name string) (any, error) {
	v, ok := rec[name]
	if !ok {
		return nil, fieldErr(name, ErrMissingField, "missing")
	}
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for _, inner := range m {
			v = inner
		}
	}
	if v == nil {
		return nil, fieldErr(name, ErrNullField, "null")
	}
	return v, nil
}

// nativeKind names the Avro type of a goavro native value for error messages.
func nativeKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64, int:
		return "long"
	case int32:
		return "int"
	case float64:
		return "double"
	case float32:
		return "float"
	case bool:
		return "boolean"
	case []byte:
		return "bytes"
	case time.Time:
		return "timestamp"
	case map[string]any:
		return "map or record"
	case []any:
		return "array"
	}
	return fmt.Sprintf("Go type %T", v)
}
