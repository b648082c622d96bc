package schemas_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/schemas"
)

// flatSchema has every type AppendFlatJSON writes, nullable unions with null
// first and last, and defaults it writes (null) and declines (1.5, "A").
const flatSchema = `{"type":"record","name":"Flat","namespace":"test","fields":[
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
  {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}}
]}`

// checkFlat fails t unless AppendFlatJSON of line either declines or gives
// exactly the bytes goavro encodes from FromJSON's record, with the raw
// strings of that record. It reports whether the fast path took the line.
func checkFlat(t *testing.T, s *schemas.Schema, line []byte) bool {
	t.Helper()
	raw := make([][]byte, len(s.Fields))
	prefix := []byte{0xAA}
	got, ok := s.AppendFlatJSON(prefix, line, raw)
	rec, err := s.FromJSON(line)
	if !ok {
		if !bytes.Equal(got, prefix) {
			t.Fatalf("AppendFlatJSON(%q) declined but changed dst: %x", line, got)
		}
		return false
	}
	if err != nil {
		t.Fatalf("AppendFlatJSON(%q) took a line FromJSON refuses: %v", line, err)
	}
	want, err := s.Codec.BinaryFromNative([]byte{0xAA}, rec)
	if err != nil {
		t.Fatalf("goavro encode of FromJSON(%q): %v", line, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendFlatJSON(%q) = %x, goavro: %x", line, got, want)
	}
	for i, f := range s.Fields {
		if str, isStr := rec[f.Name].(string); isStr && f.Type == "string" && !f.Nullable {
			if string(raw[i]) != str {
				t.Fatalf("AppendFlatJSON(%q): raw[%s] = %q, want %q", line, f.Name, raw[i], str)
			}
		}
	}
	return true
}

// randomFlatLine writes a JSON object of random fields of flatSchema (and
// sometimes unknown, repeated or missing ones), with values of the right
// type or not, in random order and spacing.
func randomFlatLine(rng *rand.Rand) []byte {
	values := map[string][]string{
		"id":    {`"e1"`, `""`, `"é∂"`, `"q\"x"`, `"\u0041"`, "\"\xff\"", `7`, `null`},
		"n":     {`-7`, `0`, `2147483647`, `2147483648`, `-2147483648`, `1e3`, `1.5`, `"3"`, `null`},
		"big":   {`1`, `-9223372036854775808`, `9223372036854775808`, `12345678901234`, `1E+2`, `2.0`, `true`},
		"x":     {`2.25`, `-0.0`, `1e308`, `1e309`, `3`, `-1.5e-300`, `"x"`, `null`},
		"f":     {`0.5`, `3.4e38`, `3.5e38`, `1`, `-2.5E-3`, `false`},
		"ok":    {`true`, `false`, `null`, `1`},
		"note":  {`"hi"`, `null`, `""`, `"a\nb"`, `5`},
		"at":    {`1700000000123`, `null`, `-1`, `1.25`},
		"score": {`1.25`, `null`, `7`, `"s"`},
		"kind":  {`"A"`, `"B"`, `"C"`, `null`},
		"ts":    {`1700000000123`, `0`, `-5`, `1e12`, `"t"`, `null`},
	}
	names := []string{"id", "n", "big", "x", "f", "ok", "note", "at", "score", "kind", "ts"}
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	space := func() string { return []string{"", "", " ", "\t", "\r\n"}[rng.IntN(5)] }
	var b strings.Builder
	b.WriteString(space() + "{")
	n := 0
	for _, name := range names {
		if rng.IntN(12) == 0 && name != "id" && name != "ts" { // sometimes missing
			continue
		}
		vs := values[name]
		v := vs[0]
		if rng.IntN(3) == 0 {
			v = vs[rng.IntN(len(vs))]
		}
		if n > 0 {
			b.WriteString(space() + ",")
		}
		fmt.Fprintf(&b, "%s%q%s:%s%s", space(), name, space(), space(), v)
		n++
	}
	switch rng.IntN(30) {
	case 0:
		b.WriteString(`,"colour":"red"`)
	case 1:
		b.WriteString(`,"id":"again"`)
	case 2:
		b.WriteString(`,"nested":{"a":1}`)
	}
	b.WriteString("}" + space())
	if rng.IntN(40) == 0 {
		return []byte(b.String()[:b.Len()/2])
	}
	return []byte(b.String())
}

// AppendFlatJSON writes exactly goavro's bytes for every line it takes,
// takes the common valid line, and declines every line FromJSON refuses.
func TestAppendFlatJSONMatchesGoavro(t *testing.T) {
	s := mustParse(t, flatSchema)
	rng := rand.New(rand.NewPCG(7, 11))
	taken, valid := 0, 0
	for range 20000 {
		line := randomFlatLine(rng)
		if checkFlat(t, s, line) {
			taken++
		}
		if _, err := s.FromJSON(line); err == nil {
			valid++
		}
	}
	// The generator's first choice of each value is plain and valid, and
	// kind and score are usually present: most valid lines take the fast path.
	if taken < valid/2 || taken < 2000 {
		t.Fatalf("the fast path took %d of %d valid lines; want at least half", taken, valid)
	}
	t.Logf("fast path took %d of %d valid lines (of 20000)", taken, valid)

	// A line naming every field plainly is always taken.
	line := []byte(`{"id":"e1","n":-7,"big":1e3,"x":2.25,"f":0.5,"ok":true,"note":"hi","at":1700000000123,"score":null,"kind":"B","ts":5}`)
	if !checkFlat(t, s, line) {
		t.Fatalf("AppendFlatJSON declined %s", line)
	}
}

func FuzzAppendFlatJSON(f *testing.F) {
	s := mustParse(f, flatSchema)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		f.Add(randomFlatLine(rng))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkFlat(t, s, line) })
}

func BenchmarkAppendFlatJSON(b *testing.B) {
	txn := mustParse(b, `{"type":"record","name":"T","fields":[{"name":"user_id","type":"string"},{"name":"merchant_id","type":"string"},{"name":"amount","type":"double"},{"name":"currency","type":"string"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}}]}`)
	line := []byte(`{"user_id":"user-000123","merchant_id":"merchant-42","amount":12.5,"currency":"EUR","ts":1700000000123}`)
	raw := make([][]byte, len(txn.Fields))
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		var ok bool
		if buf, ok = txn.AppendFlatJSON(buf[:0], line, raw); !ok {
			b.Fatal("declined")
		}
	}
}
