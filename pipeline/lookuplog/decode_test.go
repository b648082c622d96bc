package lookuplog

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"

	"github.com/featurepipe/featurepipe/internal/jsonenc"
)

var decodeSeeds = []string{
	`{"entity":"user","key":"u1","at":1700000000123,"features":{"a@1":12.5,"b@2":null}}`,
	`{"entity":"user","key":"u1","at":1700000000123,"consumer":"fraud-model","service":"fraud_scoring","request":"r1-1k","features":{"a@1":-0,"b@2":1e-7,"c@1":3e+21,"d@1":0.1}}`,
	`{"entity":"user","key":"u1","at":1700000000123,"features":{}}`,
	`{"entity":"user","key":"héllo 日本","at":1,"features":{"a@1":1,"a@1":null}}`,
	`{"entity":"user","key":"bad` + "\xff" + `","at":1,"features":{}}`,
	`{"entity":"user","key":"a\"b","at":1,"features":{}}`,
	`{"entity":"user","key":"u1","at":1.5,"features":{}}`,
	`{"entity":"user","key":"u1","at":1e3,"features":{}}`,
	`{"entity":"user","key":"u1","at":01,"features":{}}`,
	`{"entity":"user","key":"u1","at":99999999999999999999,"features":{}}`,
	`{"entity":"user","key":"u1","at":1,"features":{"a":1e999}}`,
	`{"entity":"user","key":"u1","at":1,"features":{"a":1.}}`,
	`{"entity":"user","key":"u1","at":1,"features":{"a":.5}}`,
	`{"entity":"user","key":"u1","at":1,"features":{"a":0x10}}`,
	`{"entity":"user","key":"u1","at":1,"features":{"a":Infinity}}`,
	`{"entity":"user","key":"u1","at":1,"features":{"a":1}} `,
	`{"entity":"user","key":"u1","at":1,"features":{"a":1},"x":2}`,
	`{"key":"u1","entity":"user","at":1,"features":{}}`,
	`{"Entity":"user","key":"u1","at":1,"features":{}}`,
	`{"entity":"user","key":"u1","at":1,"features":null}`,
	`{"entity":"user","key":"u1","at":1,"features":{"a":1,}}`,
	`{"entity":"user","key":"u1","at":1,"features":{"a":1}`,
	`{"entity":"user","key":"u1","at":1,"service":"s","consumer":"c","features":{}}`,
	`{"entity":"user","key":"u1","at":1,"features":{"a@1":1},"lists":{"l@1":[3,1.5,-0,1e-7],"m@1":null,"n@1":[]}}`,
	`{"entity":"user","key":"u1","at":1,"features":{},"lists":{}}`,
	`{"entity":"user","key":"u1","at":1,"features":{},"lists":{"l":[1,]}}`,
	`{"entity":"user","key":"u1","at":1,"features":{},"lists":{"l":[null]}}`,
	`{"entity":"user","key":"u1","at":1,"features":{},"lists":{"l":[1],"l":[2,3]}}`,
	`{"entity":"user","key":"u1","at":1,"features":{},"lists":{"l":[ 1]}}`,
	`{"entity":"user","key":"u1","at":1,"features":{},"lists":null}`,
	`{"entity":"user","key":"u1","at":1,"features":{"a@1":1},"strings":{"m@1":"café","n@1":null,"o@1":""}}`,
	`{"entity":"user","key":"u1","at":1,"features":{},"lists":{"l@1":[1]},"strings":{"m@1":"x"},"string_lists":{"s@1":["m-2","m-1"],"t@1":null,"u@1":[]}}`,
	`{"entity":"user","key":"u1","at":1,"features":{},"string_lists":{"s@1":["a\"b"]}}`,
	`{"entity":"user","key":"u1","at":1,"features":{},"string_lists":{"s@1":[null]}}`,
	`{"entity":"user","key":"u1","at":1,"features":{},"strings":{"m":1}}`,
	`{"entity":"user","key":"u1","at":1,"features":{},"string_lists":{},"strings":{}}`,
	`{"entity":"user","key":"u1","at":1,"features":{},"strings":{"m":"a","m":null}}`,
	`{}`, ``, `null`,
}

// FuzzDecodeFast holds the hand-written decoder to encoding/json: whatever
// it accepts, encoding/json accepts too, giving the same Entry.
//
//	go test ./pipeline/lookuplog -run '^$' -fuzz FuzzDecodeFast -fuzztime 60s
func FuzzDecodeFast(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := decodeFast(b)
		if !ok {
			return
		}
		var want Entry
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("%q: the fast decoder accepted what encoding/json rejects: %v", b, err)
		}
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("%q:\nfast %+v\njson %+v", b, got, want)
		}
	})
}

// Every record the Append functions write takes the fast path, whatever
// its strings and values.
func TestWrittenRecordsTakeTheFastPath(t *testing.T) {
	v1, v2, tiny, huge := 12.5, math.Copysign(0, -1), 1e-9, 3e21
	cafe, empty := "café ☕", ""
	for _, e := range []*Entry{
		{Entity: "user", Key: "u1", At: 1700000000123, Features: map[string]*float64{"a@1": &v1, "b@2": nil}},
		{Entity: "user", Key: "héllo", At: 1, Consumer: "fraud-model", Service: "fraud_scoring", Request: "r-1",
			Features: map[string]*float64{"a@1": &v2, "b@1": &tiny, "c@1": &huge}},
		{Entity: "user_merchant", Key: `["u1","m9"]`, At: 1, Features: map[string]*float64{}},
		{Entity: "user", Key: "u2", At: 2, Features: map[string]*float64{"a@1": &v1},
			Lists: map[string][]float64{"l@1": {3, -1.5, tiny, huge}, "m@1": nil, "n@1": {}}},
		{Entity: "user", Key: "u3", At: 3, Features: map[string]*float64{}, Lists: map[string][]float64{"l@1": {1}}},
		{Entity: "user", Key: "u4", At: 4, Features: map[string]*float64{"a@1": &v1},
			Strings: map[string]*string{"m@1": &cafe, "n@1": nil, "o@1": &empty}},
		{Entity: "user", Key: "u5", At: 5, Features: map[string]*float64{}, Lists: map[string][]float64{"l@1": {1}},
			Strings: map[string]*string{"m@1": &cafe}, StringLists: map[string][]string{"s@1": {"m-2", "", "日本"}, "t@1": nil, "u@1": {}}},
		{Entity: "user", Key: "u6", At: 6, Features: map[string]*float64{}, StringLists: map[string][]string{"s@1": {"m-1"}}},
	} {
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if e.Key == `["u1","m9"]` { // escaped quotes: encoding/json's path
			if _, ok := decodeFast(b); ok {
				t.Fatalf("%s: escapes must take encoding/json's path", b)
			}
			continue
		}
		got, ok := decodeFast(b)
		if !ok {
			t.Fatalf("%s: not decoded by the fast path", b)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("%s: %+v, want %+v", b, got, e)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	rec := benchRecord
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e Entry
			if err := json.Unmarshal(rec, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// recordContent is what a Record says, without its Entry and its reused
// buffers: an empty list and a missing one compare equal only as OK
// values with no elements.
func recordContent(r *Record) string {
	var b []byte
	b = fmt.Appendf(b, "%q %q %d %q %q %q lists:%v strings:%v string_lists:%v\n", r.Entity, r.Key, r.At, r.Consumer, r.Service, r.Request,
		r.hasLists, r.hasStrings, r.hasStringLists)
	for _, f := range r.Features {
		b = fmt.Appendf(b, "f %q %v %v\n", f.ID, f.Value, f.OK)
	}
	for _, l := range r.Lists {
		b = fmt.Appendf(b, "l %q %d %v %v\n", l.ID, len(l.Values), l.Values, l.OK)
	}
	for _, s := range r.Strings {
		b = fmt.Appendf(b, "s %q %q %v\n", s.ID, s.Value, s.OK)
	}
	for _, l := range r.StringLists {
		b = fmt.Appendf(b, "sl %q %d %q %v\n", l.ID, len(l.Values), l.Values, l.OK)
	}
	return string(b)
}

// FuzzDecoder holds Decoder to encoding/json: a record it decodes, by hand
// or not, says what the Entry encoding/json decodes says (Record.SetEntry),
// and it fails exactly where Decode fails; decoding into a Record that held
// another record leaves nothing of it behind.
//
//	go test ./pipeline/lookuplog -run '^$' -fuzz FuzzDecoder -fuzztime 60s
func FuzzDecoder(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	var d Decoder
	var r Record
	prev := []byte(`{"entity":"user","key":"u0","at":5,"consumer":"c","service":"s","request":"r","features":{"a@1":1,"z@1":null},"lists":{"l@1":[1,2]},"strings":{"m@1":"x"},"string_lists":{"s@1":["a"]}}`)
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := d.Decode(prev, &r); err != nil {
			t.Fatal(err)
		}
		err := d.Decode(b, &r)
		want, werr := Decode(b)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: Decoder error %v, Decode error %v", b, err, werr)
		}
		if err != nil {
			return
		}
		var fromJSON Entry
		if jerr := json.Unmarshal(b, &fromJSON); jerr != nil {
			t.Fatalf("%q: decoded what encoding/json rejects: %v", b, jerr)
		}
		var ref Record
		ref.SetEntry(&fromJSON)
		if got, w := recordContent(&r), recordContent(&ref); got != w {
			t.Fatalf("%q:\nDecoder %s\njson    %s", b, got, w)
		}
		if !reflect.DeepEqual(want, &fromJSON) {
			t.Fatalf("%q:\nDecode %+v\njson   %+v", b, want, fromJSON)
		}
	})
}

// A record as the lookup service writes it (one key, 7 features) decodes
// by hand into a reused Record with two allocations: the key and the
// request id; the ids, entity and consumer are interned.
func TestDecoderAllocatesTheKeyAndRequestOnly(t *testing.T) {
	var d Decoder
	var r Record
	if err := d.Decode(benchRecord, &r); err != nil {
		t.Fatal(err)
	}
	if r.Entry != nil || len(r.Features) != 7 {
		t.Fatalf("not the hand-written path: %+v", r)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := d.Decode(benchRecord, &r); err != nil {
			t.Fatal(err)
		}
	}); n > 2 {
		t.Errorf("%v allocations per record, want at most 2", n)
	}
}

// Records with a section the hand-written path does not know (here
// "buckets" and "tops") are decoded by encoding/json: the known sections
// are in the Record, everything in Record.Entry.
func TestDecoderLeavesUnknownSectionsToEncodingJSON(t *testing.T) {
	v := 2.5
	e := &Entry{Entity: "user", Key: "u1", At: 7, Features: map[string]*float64{"b@1": &v, "a@1": nil},
		Buckets: map[string]map[string]*float64{"c@1": {"EUR": &v}},
		Tops:    map[string]*ServedTop{"t@1": {Value: json.RawMessage(`[{"value":"x","count":2}]`)}}}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	var r Record
	if err := d.Decode(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Entry == nil || len(r.Entry.Buckets) != 1 || len(r.Entry.Tops) != 1 {
		t.Fatalf("Entry %+v: want the buckets and tops", r.Entry)
	}
	if len(r.Features) != 2 || r.Features[0] != (Feature{ID: "a@1"}) || r.Features[1] != (Feature{ID: "b@1", Value: 2.5, OK: true}) {
		t.Errorf("features %+v: want a@1 null, b@1 2.5, in id order", r.Features)
	}
	// The next record, as the lookup service writes it, takes the hand-written path again.
	if err := d.Decode(benchRecord, &r); err != nil || r.Entry != nil {
		t.Errorf("next record: err %v, Entry %v", err, r.Entry)
	}
}

var benchRecord = []byte(`{"entity":"user","key":"u0042","at":1700000000123,"consumer":"anonymous","request":"7f3a-2k9","features":{"login_count_lifetime@1":8,"txn_amount_avg_30d@1":46.70454545454545,"txn_amount_last@1":22.22,"txn_amount_max_7d@1":47.11,"txn_amount_min_7d@1":9.29,"txn_amount_sum_1h@1":null,"txn_count_7d@1":5}}`)

func BenchmarkDecoder(b *testing.B) {
	var d Decoder
	var r Record
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Decode(benchRecord, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// The float fast path gives ParseFloat's value, bit for bit (so -0 stays
// -0), on numbers written as the lookup service writes them and as people
// do, and leaves the rest (exponents, leading zeros, too many digits) to
// ParseFloat.
func TestSimpleFloatIsParseFloat(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	texts := []string{"0", "-0", "0.0", "-0.5", "1", "10", "123.456", "9007199254740992", "9007199254740993", "0.1", "0.30000000000000004",
		"1234567890123456789", "12345678901234567890", "0.0000000000000000000001", "0.00000000000000000000001", "00", "01", "1.", ".5", "-", "1e5", "1.5e-3", "1.5.3"}
	for range 100_000 {
		x := rng.ExpFloat64() * math.Pow(10, float64(rng.IntN(12)-4))
		if rng.IntN(2) == 0 {
			x = -x
		}
		texts = append(texts, string(jsonenc.AppendFloat(nil, x)), strconv.FormatFloat(x, 'f', rng.IntN(8), 64), strconv.FormatFloat(x, 'f', -1, 64))
	}
	fast := 0
	for _, s := range texts {
		p := parser{b: []byte(s + "}")}
		got, ok := p.simpleFloat()
		if !ok {
			if p.i != 0 {
				t.Fatalf("%q: not taken, but %d bytes consumed", s, p.i)
			}
			continue
		}
		fast++
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || p.i != len(s) || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("%q: fast path %v (consumed %d of %d), ParseFloat %v (%v)", s, got, p.i, len(s), want, err)
		}
	}
	if fast < len(texts)/2 {
		t.Errorf("fast path taken for %d of %d numbers; want most", fast, len(texts))
	}
}
