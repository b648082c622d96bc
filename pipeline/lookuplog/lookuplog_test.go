package lookuplog

import (
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestEntryRoundTrip(t *testing.T) {
	v := 12.5
	in := &Entry{Entity: "user", Key: "u1", At: 1700000000123, Features: map[string]*float64{"a@1": &v, "b@2": nil}}
	b, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Entity != "user" || out.Key != "u1" || out.At != in.At || *out.Features["a@1"] != 12.5 || out.Features["b@2"] != nil {
		t.Fatalf("round trip: %+v", out)
	}
	if _, ok := out.Features["b@2"]; !ok {
		t.Fatal("a null value must stay present")
	}
}

func TestDecodeRejectsIncompleteEntries(t *testing.T) {
	for _, b := range []string{`{}`, `{"entity":"user"}`, `not json`} {
		if _, err := Decode([]byte(b)); err == nil {
			t.Fatalf("%s: want an error", b)
		}
	}
}

// Encode (and so the lookup service's Append calls) writes what
// encoding/json writes for an Entry, for any strings and values: one
// encoding, readable by any JSON reader.
func TestEncodeMatchesEncodingJSON(t *testing.T) {
	v1, v2, tiny, huge, nan := 12.5, -0.0, 1e-9, 3e21, math.NaN()
	odd := "\"<&>\u2028\x00\\ café"
	for _, e := range []*Entry{
		{Entity: "user", Key: "u1", At: 1700000000123, Features: map[string]*float64{"b@2": nil, "a@1": &v1}},
		{Entity: "user", Key: "\"<&>\u2028\x00\xff\\", At: -1, Consumer: "fraud-model \t", Features: map[string]*float64{"z@1": &v2, "é@3": &tiny, "x@9": &huge}},
		{Entity: "merchant", Key: "", At: 1, Features: map[string]*float64{}},
		{Entity: "user", Key: "u2", At: 2, Consumer: "fraud-api", Service: "fraud_<scoring>", Features: map[string]*float64{"a@1": &v1}},
		{Entity: "user", Key: "u3", At: 3, Service: "only-service", Features: map[string]*float64{}},
		{Entity: "user", Key: "u4", At: 4, Request: "9f2c01ab-9ix", Features: map[string]*float64{}},
		{Entity: "user", Key: "u5", At: 5, Features: map[string]*float64{"a@1": &v1}, Lists: map[string][]float64{"l@1": {1, 2}},
			Strings: map[string]*string{"m@1": &odd, "n@1": nil}, StringLists: map[string][]string{"s@1": {odd, "", "m-1"}, "t@1": nil}},
		{Entity: "user", Key: "u6", At: 6, Features: map[string]*float64{}, StringLists: map[string][]string{"s@1": {}}},
		{Entity: "user", Key: "u7", At: 7, Features: map[string]*float64{"a@1": &v1}, Lists: map[string][]float64{"l@1": {1}},
			Tops: map[string]*ServedTop{"t@1": {Error: 3, Value: json.RawMessage(`[{"value":"m-1","count":4},{"value":"\u003c","count":2}]`)}, "u@1": nil, "v@1": {Value: json.RawMessage(`[]`)}}},
	} {
		got, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("Encode:\n%s\nencoding/json:\n%s", got, want)
		}
	}
	// Not finite: encoding/json refuses; the codec writes null.
	b, _ := (&Entry{Entity: "user", Key: "k", At: 1, Features: map[string]*float64{"a@1": &nan}}).Encode()
	if e, err := Decode(b); err != nil || e.Features["a@1"] != nil {
		t.Fatalf("NaN: %s, %v", b, err)
	}
}

func TestAppendAllocatesOnlyTheBuffer(t *testing.T) {
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() {
		b := AppendStart(buf[:0], "user", "u1", 1700000000123, "fraud-model", "fraud_scoring", "9f2c01ab", 12345)
		b = AppendFeature(b, 0, "a@1", 12.5, true)
		b = AppendFeature(b, 1, "b@2", 0, false)
		buf = AppendEnd(b)
	}); n != 0 {
		t.Fatalf("%v allocations per entry", n)
	}
}

// The lookup service's request id (replica id and sequence number) decodes
// as "<replica>-<base 36 sequence>".
func TestAppendStartRequestID(t *testing.T) {
	b := AppendEnd(AppendStart(nil, "user", "u1", 1, "c", "", "9f2c01ab", 36*36+1))
	e, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Request != "9f2c01ab-101" {
		t.Fatalf("request %q in %s", e.Request, b)
	}
}

// TestTopsRoundTrip: an entry with top_k values (their JSON text and
// error, null for an empty window) decodes back to the same values.
func TestTopsRoundTrip(t *testing.T) {
	in := &Entry{Entity: "user", Key: "u1", At: 9, Features: map[string]*float64{},
		Tops: map[string]*ServedTop{"t@1": {Error: 2, Value: json.RawMessage(`[{"value":true,"count":5}]`)}, "n@1": nil}}
	b, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	got, null := out.Tops["t@1"], out.Tops["n@1"]
	if _, ok := out.Tops["n@1"]; !ok || null != nil || got == nil || got.Error != 2 || string(got.Value) != `[{"value":true,"count":5}]` {
		t.Fatalf("round trip of %s: %+v", b, out.Tops)
	}
}

// TestBucketsRoundTrip: an entry with bucketed features (a map, a null
// map, an empty map, a null bucket value) encodes after its lists as
// "buckets" and decodes to the same entry.
func TestBucketsRoundTrip(t *testing.T) {
	x, y := 12.5, 3.0
	for _, e := range []*Entry{
		{Entity: "user", Key: "u1", At: 7, Features: map[string]*float64{"a@1": &x},
			Lists:   map[string][]float64{"l@1": {1, 2}},
			Buckets: map[string]map[string]*float64{"b@1": {"atm": &x, "__other__": &y, `q"t`: nil}, "c@1": nil, "d@2": {}}},
		{Entity: "user", Key: "u2", At: 8, Features: map[string]*float64{},
			Buckets: map[string]map[string]*float64{"b@1": {"EUR": &y}}},
	} {
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"buckets":{"b@1":{`) {
			t.Errorf("encoded %s", b)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s decoded as %+v, want %+v", b, got, e)
		}
		var std Entry
		if err := json.Unmarshal(b, &std); err != nil || !reflect.DeepEqual(&std, e) {
			t.Errorf("%s: encoding/json reads %+v (%v)", b, std, err)
		}
	}
}

// TestBucketStringsRoundTrip: an entry with bucketed string features (a
// map with escaped and non-ASCII strings and a null bucket, a null map, an
// empty map) encodes after "buckets" and before "tops" as
// "bucket_strings" and decodes to the same entry, as encoding/json reads
// it too.
func TestBucketStringsRoundTrip(t *testing.T) {
	x := 12.5
	s, u, q := "m-3", "café ☕", `quote " and \ backslash`
	for _, e := range []*Entry{
		{Entity: "user", Key: "u1", At: 7, Features: map[string]*float64{"a@1": &x},
			Strings:       map[string]*string{"s@1": &s},
			Buckets:       map[string]map[string]*float64{"b@1": {"EUR": &x}},
			BucketStrings: map[string]map[string]*string{"m@1": {"EUR": &s, "USD": &u, `q"t`: &q, "__other__": nil}, "n@1": nil, "o@2": {}},
			Tops:          map[string]*ServedTop{"t@1": {Error: 0, Value: json.RawMessage(`[{"value":"a","count":2}]`)}}},
		{Entity: "user", Key: "u2", At: 8, Features: map[string]*float64{},
			BucketStrings: map[string]map[string]*string{"m@1": {"GBP": &s}}},
	} {
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		i, j, k := strings.Index(text, `"buckets":`), strings.Index(text, `"bucket_strings":{"m@1":{`), strings.Index(text, `"tops":`)
		if j < 0 || (e.Buckets != nil && i > j) || (e.Tops != nil && k < j) {
			t.Errorf("encoded %s: want bucket_strings after buckets and before tops", b)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s decoded as %+v, want %+v", b, got, e)
		}
		var std Entry
		if err := json.Unmarshal(b, &std); err != nil || !reflect.DeepEqual(&std, e) {
			t.Errorf("%s: encoding/json reads %+v (%v)", b, std, err)
		}
	}
}

// TestBucketListsRoundTrip: an entry with bucketed first_k/last_k of
// numbers ("bucket_lists"), of strings ("bucket_string_lists") and bucketed
// top_k ("bucket_tops", each bucket with its own error) — maps, null maps
// (an empty window), empty maps — encodes after every other section, byte
// for byte as encoding/json writes the Entry, and decodes to the same entry.
func TestBucketListsRoundTrip(t *testing.T) {
	x := 12.5
	s, q := "m-3", `quote " and \ café`
	for _, e := range []*Entry{
		{Entity: "user", Key: "u1", At: 7, Features: map[string]*float64{"a@1": &x},
			Lists:             map[string][]float64{"l@1": {1, 2}},
			StringLists:       map[string][]string{"sl@1": {s}},
			Buckets:           map[string]map[string]*float64{"b@1": {"EUR": &x}},
			BucketStrings:     map[string]map[string]*string{"m@1": {"EUR": &s}},
			Tops:              map[string]*ServedTop{"t@1": {Error: 0, Value: json.RawMessage(`[{"value":"a","count":2}]`)}},
			BucketLists:       map[string]map[string][]float64{"bl@1": {"EUR": {3.5, 1}, "__other__": {2}, `q"t`: {-0.25}}, "bn@1": nil, "be@2": {}},
			BucketStringLists: map[string]map[string][]string{"bs@1": {"EUR": {"m-3", q, ""}, "USD": {"m-1"}}, "bsn@1": nil},
			BucketTops: map[string]map[string]*ServedTop{
				"bt@1":  {"EUR": {Error: 0, Value: json.RawMessage(`[{"value":"m-1","count":3},{"value":"m-0","count":1}]`)}, "__other__": {Error: 4, Value: json.RawMessage(`[{"value":2.5,"count":9}]`)}},
				"btn@1": nil}},
		{Entity: "user", Key: "u2", At: 8, Features: map[string]*float64{},
			BucketTops: map[string]map[string]*ServedTop{"bt@1": {"true": {Value: json.RawMessage(`[{"value":true,"count":1}]`)}}}},
		{Entity: "user", Key: "u3", At: 9, Features: map[string]*float64{},
			BucketStringLists: map[string]map[string][]string{"bs@1": {"__null__": {"a"}}}},
	} {
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != string(want) {
			t.Errorf("Encode:\n%s\nencoding/json:\n%s", b, want)
		}
		text := string(b)
		last := -1
		for _, sec := range []string{`"tops":`, `"bucket_lists":`, `"bucket_string_lists":`, `"bucket_tops":`} {
			if i := strings.Index(text, sec); i >= 0 {
				if i < last {
					t.Errorf("encoded %s: %s out of order", b, sec)
				}
				last = i
			}
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s decoded as %+v, want %+v", b, got, e)
		}
	}
	// The lookup service's Append calls write the same bytes as Encode.
	e := &Entry{Entity: "user", Key: "u9", At: 10, Features: map[string]*float64{},
		BucketLists:       map[string]map[string][]float64{"bl@1": {"EUR": {3.5, 1}}, "bn@1": nil},
		BucketStringLists: map[string]map[string][]string{"bs@1": {"EUR": {"m-3"}}},
		BucketTops:        map[string]map[string]*ServedTop{"bt@1": {"EUR": {Error: 1, Value: json.RawMessage(`[{"value":"m","count":3}]`)}}}}
	b := AppendStart(nil, "user", "u9", 10, "", "", "", 0)
	b = AppendBucketListsStart(b)
	b = AppendBucketMapStart(b, 0, "bl@1")
	b = AppendBucketList(b, 0, "EUR", []float64{3.5, 1}, true)
	b = AppendBucketMapEnd(b)
	b = AppendBucketMapNull(b, 1, "bn@1")
	b = AppendBucketStringListsStart(b)
	b = AppendBucketMapStart(b, 0, "bs@1")
	b = AppendBucketStringList(b, 0, "EUR", []string{"m-3"}, true)
	b = AppendBucketMapEnd(b)
	b = AppendBucketTopsStart(b)
	b = AppendBucketMapStart(b, 0, "bt@1")
	b = AppendBucketTop(b, 0, "EUR", []byte(`[{"value":"m","count":3}]`), 1, true)
	b = AppendEnd(AppendBucketMapEnd(b))
	if enc, _ := e.Encode(); string(b) != string(enc) {
		t.Errorf("Append calls wrote\n%s\nEncode\n%s", b, enc)
	}
}

func TestEntries(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  []string
	}{
		{`{"a":1}`, []string{`{"a":1}`}}, // a record of an older replica: one entry
		{"{\"a\":1}\n{\"b\":2}", []string{`{"a":1}`, `{"b":2}`}},
		{"{\"a\":1}\n\n \n{\"b\":2}\n", []string{`{"a":1}`, `{"b":2}`}},
		{"", nil},
	} {
		var got []string
		for b := range Entries([]byte(tc.value)) {
			got = append(got, string(b))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Entries(%q) = %q, want %q", tc.value, got, tc.want)
		}
	}
	n := 0
	for range Entries([]byte("1\n2\n3")) {
		if n++; n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("a loop that breaks after 2 entries saw %d", n)
	}
}

func TestDecodeEachSkipsWhatDoesNotDecode(t *testing.T) {
	a, _ := (&Entry{Entity: "user", Key: "u1", At: 1, Features: map[string]*float64{}}).Encode()
	b, _ := (&Entry{Entity: "user", Key: "u2", At: 2, Features: map[string]*float64{}}).Encode()
	var keys []string
	n, err := DecodeEach(slices.Concat(a, []byte("\n{not json\n"), b), func(e *Entry) { keys = append(keys, e.Key) })
	if n != 1 || err == nil || !slices.Equal(keys, []string{"u1", "u2"}) {
		t.Errorf("DecodeEach: %d skipped (%v), passed %q; want 1 skipped with its error, u1 and u2 passed", n, err, keys)
	}
}
