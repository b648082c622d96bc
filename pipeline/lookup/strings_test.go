package lookup

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
)

// TestStringValueJSON: a string feature's value (last, first of a string
// field) is a JSON string and a string list feature's (first_k, last_k) an
// array of strings, and both read back as they were, typed TypeString.
func TestStringValueJSON(t *testing.T) {
	for _, s := range []string{"grocery", "", `quo"te`, "café", "123", "true", "null"} {
		v := value{typ: aggregations.TypeString, str: s, hasV: true, status: StatusPresent, version: 1}
		b := v.appendJSON(nil)
		want, _ := json.Marshal(s)
		if string(b) != `{"value":`+string(want)+`,"status":"PRESENT","version":1}` {
			t.Errorf("%q written as %s", s, b)
		}
		var fv FeatureValue
		if err := json.Unmarshal(b, &fv); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if fv.Str == nil || *fv.Str != s || fv.Type != aggregations.TypeString || fv.Value != nil {
			t.Errorf("%s read back as %+v", b, fv)
		}
		if again, err := json.Marshal(fv); err != nil || string(again) != string(b) {
			t.Errorf("%s re-written as %s, %v", b, again, err)
		}
	}
	list := []string{"atm", "", "fuel"}
	v := value{typ: aggregations.TypeString, strs: list, hasV: true, status: StatusPresent, version: 2}
	b := v.appendJSON(nil)
	if string(b) != `{"value":["atm","","fuel"],"status":"PRESENT","version":2}` {
		t.Errorf("list written as %s", b)
	}
	var fv FeatureValue
	if err := json.Unmarshal(b, &fv); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fv.Strs, list) || fv.List != nil || fv.Type != aggregations.TypeString {
		t.Errorf("%s read back as %+v", b, fv)
	}
	// An empty window: null, whatever the type.
	null := value{typ: aggregations.TypeString, status: StatusEmptyWindow, version: 1}
	if b := null.appendJSON(nil); string(b) != `{"value":null,"status":"EMPTY_WINDOW","version":1}` {
		t.Errorf("empty string feature written as %s", b)
	}
}

// TestStringFeastCell: Feast's online answer carries a string feature as a
// String and a string list feature as an Array(String), PRESENT; an empty
// window is null.
func TestStringFeastCell(t *testing.T) {
	status, v := feastCell(&value{typ: aggregations.TypeString, str: "atm", hasV: true, status: StatusPresent})
	if status != feastPresent || v != "atm" {
		t.Errorf("string cell %v, %#v", status, v)
	}
	status, v = feastCell(&value{typ: aggregations.TypeString, strs: []string{"a", ""}, hasV: true, status: StatusPresent})
	if l, ok := v.([]string); status != feastPresent || !ok || !slices.Equal(l, []string{"a", ""}) {
		t.Errorf("string list cell %v, %#v", status, v)
	}
	if status, v = feastCell(&value{typ: aggregations.TypeString, status: StatusEmptyWindow}); status != feastNull || v != nil {
		t.Errorf("empty string cell %v, %#v", status, v)
	}
}
