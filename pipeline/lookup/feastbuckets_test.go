package lookup

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
)

// TestFeastBucketsAsTheSDKReadsThem: Feast's online endpoint answers a
// bucketed feature's empty map (an empty window of sum, {} in
// /v1/lookup) as NULL_VALUE with null, since the Feast SDK (0.64+) fails
// the whole call on {}, and a non-empty map as PRESENT with the lookup's
// buckets, every double written as a float (with a '.' or an exponent).
func TestFeastBucketsAsTheSDKReadsThem(t *testing.T) {
	fx := bucketFixture(t)
	keys := []string{"u1", "u2", "42", "nobody"}
	body, _ := json.Marshal(map[string]any{"entity": "user", "keys": keys, "features": []string{"amount_by_currency_7d"}})
	rec := fx.do(t, "POST", "/v1/lookup", string(body))
	if rec.Code != 200 {
		t.Fatalf("lookup: %d %s", rec.Code, rec.Body)
	}
	var resp LookupResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	body, _ = json.Marshal(map[string]any{"features": []string{"transactions:amount_by_currency_7d"}, "entities": map[string]any{"user_id": keys}})
	rec = fx.do(t, "POST", "/get-online-features", string(body))
	if rec.Code != 200 {
		t.Fatalf("feast: %d %s", rec.Code, rec.Body)
	}
	var feast struct {
		Results []struct {
			Values   []json.RawMessage `json:"values"`
			Statuses []string          `json:"statuses"`
		} `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &feast); err != nil {
		t.Fatal(err)
	}
	col := feast.Results[len(feast.Results)-1]
	seen := map[string]bool{}
	for i, key := range keys {
		want := resp.Results[i].Features["amount_by_currency_7d"]
		raw, status := col.Values[i], col.Statuses[i]
		switch {
		case want.Status == StatusNotFound:
			if status != feastNotFound || string(raw) != "null" {
				t.Errorf("%s: %s %s, want NOT_FOUND null", key, status, raw)
			}
			seen["not_found"] = true
		case want.Buckets != nil && len(want.Buckets) == 0:
			if status != feastNull || string(raw) != "null" {
				t.Errorf("%s (empty map in /v1/lookup): %s %s, want NULL_VALUE null", key, status, raw)
			}
			seen["empty"] = true
		default:
			var m map[string]json.RawMessage
			if err := json.Unmarshal(raw, &m); err != nil || status != feastPresent || len(m) != len(want.Buckets) || len(m) == 0 {
				t.Errorf("%s: %s %s (%v), want PRESENT and %d buckets", key, status, raw, err, len(want.Buckets))
				continue
			}
			for b, r := range m {
				var v float64
				if err := json.Unmarshal(r, &v); err != nil || want.Buckets[b].Value == nil || v != *want.Buckets[b].Value || !bytes.ContainsAny(r, ".e") {
					t.Errorf("%s bucket %s: %s, want %v written as a float", key, b, r, want.Buckets[b].Value)
				}
			}
			seen["present"] = true
		}
	}
	if !seen["not_found"] || !seen["empty"] || !seen["present"] {
		t.Errorf("the fixture did not reach NOT_FOUND, an empty map and a map: %v", seen)
	}

	// An integral double in a bucket is written 12.0, a count's long 3.
	fv := value{typ: aggregations.TypeDouble, hasV: true, buckets: []bucketEntry{
		{key: "EUR", val: value{typ: aggregations.TypeDouble, v: 12, hasV: true}},
		{key: "USD", val: value{typ: aggregations.TypeDouble, v: 0.5, hasV: true}},
		{key: "GBP", val: value{typ: aggregations.TypeLong, v: 3, hasV: true}},
	}}
	status, v := feastCell(&fv)
	b, err := json.Marshal(v)
	if want := `{"EUR":12.0,"GBP":3,"USD":0.5}`; err != nil || status != feastPresent || string(b) != want {
		t.Errorf("feastCell = %s %s (%v), want PRESENT %s", status, b, err, want)
	}
}
