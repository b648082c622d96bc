package lookup

import (
	"encoding/json"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
)

// TestFeastBucketedLists: Feast's answer carries a bucketed last_k as a
// map of lists (doubles as floats, 12.0) and a bucketed top_k as a map of
// lists of {"value", "count"} objects, not the JSON text an unbucketed
// top_k's String is: the Feast SDK reads those as MAP of DOUBLE_LIST and
// MAP of MAP_LIST (TestFeastSDK checks it with the real SDK).
func TestFeastBucketedLists(t *testing.T) {
	for _, tt := range []struct {
		name string
		v    value
		want string
	}{
		{"last_k of doubles", value{typ: aggregations.TypeDouble, hasV: true, status: StatusPresent, buckets: []bucketEntry{
			{"EUR", value{typ: aggregations.TypeDouble, list: []float64{12, 3.5}, hasV: true}}}},
			`{"EUR":[12.0,3.5]}`},
		{"last_k of strings", value{typ: aggregations.TypeString, hasV: true, status: StatusPresent, buckets: []bucketEntry{
			{"EUR", value{typ: aggregations.TypeString, strs: []string{"m-1", "m-2"}, hasV: true}}}},
			`{"EUR":["m-1","m-2"]}`},
		{"top_k of strings", value{typ: aggregations.TypeString, hasV: true, status: StatusPresent, buckets: []bucketEntry{
			{"EUR", value{typ: aggregations.TypeString, top: []TopValue{{Str: "m-1", Count: 3}, {Str: "m-2", Count: 1}}, hasV: true}},
			{"__other__", value{typ: aggregations.TypeString, top: []TopValue{{Str: "m-3", Count: 1}}, hasV: true}}}},
			`{"EUR":[{"count":3,"value":"m-1"},{"count":1,"value":"m-2"}],"__other__":[{"count":1,"value":"m-3"}]}`},
		{"top_k of doubles", value{typ: aggregations.TypeDouble, hasV: true, status: StatusPresent, buckets: []bucketEntry{
			{"EUR", value{typ: aggregations.TypeDouble, top: []TopValue{{Value: 3, Count: 2}}, hasV: true}}}},
			`{"EUR":[{"count":2,"value":3.0}]}`},
		{"top_k of longs", value{typ: aggregations.TypeLong, hasV: true, status: StatusPresent, buckets: []bucketEntry{
			{"EUR", value{typ: aggregations.TypeLong, top: []TopValue{{Value: 1700000000000, Count: 2}}, hasV: true}}}},
			`{"EUR":[{"count":2,"value":1700000000000}]}`},
	} {
		status, v := feastCell(&tt.v)
		if status != feastPresent {
			t.Errorf("%s: status %s", tt.name, status)
		}
		b, err := json.Marshal(v)
		if err != nil || string(b) != tt.want {
			t.Errorf("%s: Feast value %s (%v), want %s", tt.name, b, err, tt.want)
		}
	}
}
