package lookuplog

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
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
	rec := []byte(`{"entity":"user","key":"u0042","at":1700000000123,"consumer":"anonymous","request":"7f3a-2k9","features":{"login_count_lifetime@1":8,"txn_amount_avg_30d@1":46.70454545454545,"txn_amount_last@1":22.22,"txn_amount_max_7d@1":47.11,"txn_amount_min_7d@1":9.29,"txn_amount_sum_1h@1":null,"txn_count_7d@1":5}}`)
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
