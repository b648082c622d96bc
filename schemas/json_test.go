package schemas_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/schemas"
)

// eventSchema covers every type FromJSON supports, nullable unions in both
// orders and defaults.
const eventSchema = `{"type":"record","name":"Event","namespace":"test","fields":[
  {"name":"id","type":"string"},
  {"name":"n","type":"int"},
  {"name":"big","type":"long"},
  {"name":"x","type":"double"},
  {"name":"f","type":"float"},
  {"name":"ok","type":"boolean"},
  {"name":"note","type":["null","string"],"default":null},
  {"name":"at","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
  {"name":"score","type":["double","null"],"default":1.5},
  {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]},"default":"A"},
  {"name":"raw","type":"bytes","default":"\u00ff"}
]}`

func mustParse(t testing.TB, text string) *schemas.Schema {
	t.Helper()
	s, err := schemas.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFromJSONValidLineSurvivesEncodeAndDecode(t *testing.T) {
	s := mustParse(t, eventSchema)
	line := `{"id":"e1","n":-7,"big":1e3,"x":2.25,"f":0.5,"ok":true,"note":"hi","at":1700000000123,"score":null,"kind":"B","raw":"a\u00e9"}`
	native, err := s.FromJSON([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	_, rec, err := schemas.NewSet(s).Decode(mustEncode(t, s, native))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		field string
		get   func(map[string]any, string) (any, error)
		want  any
	}{
		{"id", str, "e1"},
		{"n", integer, int64(-7)},
		{"big", integer, int64(1000)},
		{"x", float, 2.25},
		{"f", float, 0.5},
		{"note", str, "hi"},
		{"at", integer, int64(1700000000123)},
		{"kind", raw, "B"},
		{"ok", raw, true},
	} {
		got, err := c.get(rec, c.field)
		if err != nil || got != c.want {
			t.Errorf("%s = %#v, %v; want %#v", c.field, got, err, c.want)
		}
	}
	if _, err := schemas.Float(rec, "score"); !errors.Is(err, schemas.ErrNullField) {
		t.Errorf("score: err = %v, want ErrNullField", err)
	}
	if got, _ := rec["raw"].([]byte); !bytes.Equal(got, []byte{'a', 0xE9}) {
		t.Errorf("raw = %v, want code points as bytes [97 233]", rec["raw"])
	}
}

func TestFromJSONNullableFieldsUseGoavroUnionForm(t *testing.T) {
	s := mustParse(t, eventSchema)
	rec := mustFromJSON(t, s, `{"id":"e","n":1,"big":2,"x":3,"f":4,"ok":false,"note":"hi","at":5,"score":6}`)
	for field, want := range map[string]string{"note": "string", "at": "long.timestamp-millis", "score": "double"} {
		m, ok := rec[field].(map[string]any)
		if _, has := m[want]; !ok || len(m) != 1 || !has {
			t.Errorf("%s = %#v, want map[string]any{%q: v}", field, rec[field], want)
		}
	}
}

func TestFromJSONMissingFieldsTakeSchemaDefaults(t *testing.T) {
	s := mustParse(t, eventSchema)
	rec := mustFromJSON(t, s, `{"id":"e","n":1,"big":2,"x":3,"f":4,"ok":false}`)
	if rec["note"] != nil || rec["at"] != nil {
		t.Errorf("note, at = %#v, %#v; want nil (default null)", rec["note"], rec["at"])
	}
	if v, err := schemas.Float(rec, "score"); err != nil || v != 1.5 {
		t.Errorf("score = %v, %v; want default 1.5", v, err)
	}
	if rec["kind"] != "A" || !bytes.Equal(rec["raw"].([]byte), []byte{0xFF}) {
		t.Errorf("kind, raw = %#v, %#v; want defaults A and [255]", rec["kind"], rec["raw"])
	}
	if _, err := s.Encode(nil, rec); err != nil {
		t.Fatalf("record with defaults does not encode: %v", err)
	}
}

func TestFromJSONFieldErrors(t *testing.T) {
	s := mustParse(t, eventSchema)
	const base = `"id":"e","n":1,"big":2,"x":3,"f":4,"ok":false`
	tests := []struct {
		name   string
		line   string
		kind   error
		field  string
		detail string // substring of the message after the field name
	}{
		{"repeated field", `{` + base + `,"x":"abc"}`, schemas.ErrUnknownField, "x", "appears twice"},
		{"wrong type names what was wanted and got", `{"id":"e","n":1,"big":2,"x":"abc","f":4,"ok":false}`, schemas.ErrWrongType, "x", `want double, got string "abc"`},
		{"number where a string is wanted", `{"id":7,"n":1,"big":2,"x":3,"f":4,"ok":false}`, schemas.ErrWrongType, "id", "want string, got number 7"},
		{"string where a boolean is wanted", `{"id":"e","n":1,"big":2,"x":3,"f":4,"ok":"true"}`, schemas.ErrWrongType, "ok", `want boolean, got string "true"`},
		{"missing field without default", `{"n":1,"big":2,"x":3,"f":4,"ok":false}`, schemas.ErrMissingField, "id", "missing"},
		{"unknown field", `{` + base + `,"extra":1}`, schemas.ErrUnknownField, "extra", "not in schema test.Event"},
		{"non-integral long", `{"id":"e","n":1,"big":1.5,"x":3,"f":4,"ok":false}`, schemas.ErrWrongType, "big", "want long, got non-integral number 1.5"},
		{"long beyond int64", `{"id":"e","n":1,"big":9223372036854775808,"x":3,"f":4,"ok":false}`, schemas.ErrWrongType, "big", "out of range"},
		{"int beyond int32", `{"id":"e","n":2147483648,"big":2,"x":3,"f":4,"ok":false}`, schemas.ErrWrongType, "n", "want int, got number 2147483648 (out of range)"},
		{"double beyond float64", `{"id":"e","n":1,"big":2,"x":1e400,"f":4,"ok":false}`, schemas.ErrWrongType, "x", "out of range"},
		{"float beyond float32", `{"id":"e","n":1,"big":2,"x":3,"f":1e39,"ok":false}`, schemas.ErrWrongType, "f", "want float, got number 1e39 (out of range)"},
		{"null for a non-nullable field", `{"id":"e","n":1,"big":2,"x":null,"f":4,"ok":false}`, schemas.ErrNullField, "x", "want double, got null"},
		{"enum value not among the symbols", `{` + base + `,"kind":"C"}`, schemas.ErrWrongType, "kind", `want one of A, B, got string "C"`},
		{"bytes beyond code point 255", `{` + base + `,"raw":"€"}`, schemas.ErrWrongType, "raw", "code points 0-255"},
		{"object for a nullable string", `{` + base + `,"note":{"string":"x"}}`, schemas.ErrWrongType, "note", "want string, got object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.FromJSON([]byte(tt.line))
			if !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want kind %v", err, tt.kind)
			}
			var fe *schemas.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("err = %v, want a FieldError for %q", err, tt.field)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, `field "`+tt.field+`": `) || !strings.Contains(msg, tt.detail) {
				t.Fatalf("message %q, want it to name field %q and say %q", msg, tt.field, tt.detail)
			}
		})
	}
}

func TestFromJSONDemoMessageFormat(t *testing.T) {
	txn := mustLoad(t, "transaction.avsc")
	_, err := txn.FromJSON([]byte(`{"user_id":"u","merchant_id":"m","amount":"abc","currency":"EUR","ts":1}`))
	if err == nil || err.Error() != `field "amount": want double, got string "abc"` {
		t.Fatalf("err = %v, want exactly: field \"amount\": want double, got string \"abc\"", err)
	}
}

func TestFromJSONRejectsWhatIsNotOneObject(t *testing.T) {
	s := mustParse(t, eventSchema)
	for name, line := range map[string]string{
		"array":             `[1]`,
		"string":            `"e"`,
		"truncated object":  `{"id":"e",`,
		"invalid JSON":      `{"id" "e"}`,
		"two objects":       `{"id":"e","n":1,"big":2,"x":3,"f":4,"ok":false} {}`,
		"empty input":       ``,
		"value after close": `{"id":"e","n":1,"big":2,"x":3,"f":4,"ok":false}]`,
	} {
		t.Run(name, func(t *testing.T) {
			if rec, err := s.FromJSON([]byte(line)); err == nil {
				t.Fatalf("FromJSON(%q) = %v, want an error", line, rec)
			}
		})
	}
}

func TestFromJSONUnsupportedTypes(t *testing.T) {
	s := mustParse(t, `{"type":"record","name":"C","fields":[{"name":"tags","type":{"type":"array","items":"string"}}]}`)
	_, err := s.FromJSON([]byte(`{"tags":["a"]}`))
	if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), `field "tags"`) {
		t.Fatalf("err = %v, want errors.ErrUnsupported naming tags", err)
	}
}

// parseInteger must decide integrality exactly, whatever float64 would round
// to; math/big is the oracle.
func TestParseIntegerIsExact(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "7", "-7", "1e3", "10.0", "1.5", "-1.5", "123e-2", "1200e-2", "0.000",
		"1.0000000000000000001", "9007199254740993", "9007199254740993.0",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
		"9.223372036854775807e18", "9.223372036854775808e18", "1e19", "1E18", "1e-5", "0.1e1", "100e-2",
		"5e+2", "0e10",
	} {
		t.Run(s, func(t *testing.T) {
			r, ok := new(big.Rat).SetString(s)
			if !ok {
				t.Fatalf("oracle cannot parse %q", s)
			}
			wantIntegral := r.IsInt()
			wantInRange := wantIntegral && r.Num().IsInt64()
			got, integral, inRange := schemas.ParseInteger(s)
			if integral != wantIntegral || inRange != wantInRange {
				t.Fatalf("integral, inRange = %v, %v; want %v, %v", integral, inRange, wantIntegral, wantInRange)
			}
			if wantInRange && got != r.Num().Int64() {
				t.Fatalf("value = %d, want %s", got, r.Num())
			}
		})
	}
	// Exponents math/big should not be asked to expand.
	for s, want := range map[string][2]bool{
		"1e999999999999999999999":  {true, false},
		"1e-999999999999999999999": {false, false},
		"0e999999999999999999999":  {true, true},
		"-2e400":                   {true, false},
	} {
		if _, integral, inRange := schemas.ParseInteger(s); integral != want[0] || inRange != want[1] {
			t.Errorf("ParseInteger(%s): integral, inRange = %v, %v; want %v, %v", s, integral, inRange, want[0], want[1])
		}
	}
}

func BenchmarkFromJSON(b *testing.B) {
	txn := mustLoad(b, "transaction.avsc")
	line := []byte(`{"user_id":"user-000123","merchant_id":"merchant-42","amount":12.5,"currency":"EUR","ts":1700000000123}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := txn.FromJSON(line); err != nil {
			b.Fatal(err)
		}
	}
}

// Adapters giving the accessors one shape for table tests.
func str(r map[string]any, n string) (any, error)     { return schemas.String(r, n) }
func integer(r map[string]any, n string) (any, error) { return schemas.Int(r, n) }
func float(r map[string]any, n string) (any, error)   { return schemas.Float(r, n) }
func raw(r map[string]any, n string) (any, error)     { return r[n], nil }

// Whatever FromJSON accepts, Encode accepts: the two agree on native forms.
func FuzzFromJSON(f *testing.F) {
	s := mustParse(f, eventSchema)
	f.Add([]byte(`{"id":"e1","n":-7,"big":1e3,"x":2.25,"f":0.5,"ok":true,"note":"hi","at":1700000000123,"score":null,"kind":"B","raw":"a"}`))
	f.Add([]byte(`{"id":"e","n":1,"big":2,"x":3,"f":4,"ok":false}`))
	f.Add([]byte(`{"id":"e","n":2147483647,"big":-9223372036854775808,"x":1e308,"f":3.4e38,"ok":false,"at":null}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, err := s.FromJSON(line)
		if err != nil {
			return
		}
		if _, err := s.Encode(nil, rec); err != nil {
			t.Fatalf("FromJSON(%s) gave a record Encode refuses: %v", line, err)
		}
	})
}

// FromJSON's flat-object fast path answers exactly as the token-by-token
// decoder: the same record, or an error with the same message.
func FuzzFromJSONFastPathMatchesTokens(f *testing.F) {
	s := mustParse(f, eventSchema)
	for _, seed := range []string{
		`{"id":"e1","n":-7,"big":1e3,"x":2.25,"f":0.5,"ok":true,"note":"hi","at":1700000000123,"score":null,"kind":"B","raw":"a"}`,
		` { "id" : "e" , "n" : 1 , "big" : 2 , "x" : 3 , "f" : 4 , "ok" : false } `,
		"{\"id\":\"e\",\t\"n\":1,\r\n\"big\":2,\"x\":3,\"f\":4,\"ok\":false}",
		`{"id":"e\"q\\u00e9\n","n":1,"big":2,"x":3,"f":4,"ok":false}`,
		`{"i\u0064":"e","n":1,"big":2,"x":3,"f":4,"ok":false}`,
		"{\"id\":\"\xff\xfe\",\"n\":1,\"big\":2,\"x\":3,\"f\":4,\"ok\":false}",
		`{"id":"e","n":1,"big":2,"x":3,"f":4,"ok":false,"id":"again"}`,
		`{"id":"e","n":1,"big":2,"x":3,"f":4,"ok":false,"colour":"red"}`,
		`{"id":"e","n":1.5,"big":2,"x":3,"f":4,"ok":false}`,
		`{"id":"e","n":1,"big":2,"x":-0.0e-0,"f":4E+2,"ok":false}`,
		`{"id":"e","n":1,"big":2,"x":"3","f":4,"ok":null}`,
		`{"id":"e","n":1,"big":2,"x":3,"f":4}`,
		`{"id":"e","n":1,"big":2,"x":3,"f":4,"ok":false,"note":{"string":"x"}}`,
		`{"id":"e","n":[1],"big":2,"x":3,"f":4,"ok":false}`,
		`{"id":"e","n":1,"big":2,"x":3,"f":4,"ok":false} {}`,
		`{"id":"e",`,
		`{}`,
		`[1]`,
		`"e"`,
		`null`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got, gotErr := s.FromJSON(line)
		want, wantErr := s.FromJSONTokens(line)
		if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
			t.Fatalf("FromJSON(%q): error %v, token decoder: %v", line, gotErr, wantErr)
		}
		if gotErr == nil && fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
			t.Fatalf("FromJSON(%q) = %#v, token decoder: %#v", line, got, want)
		}
	})
}
