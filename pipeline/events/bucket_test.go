package events_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// bucketFeatures are bucketed by a string, a long and a nullable boolean
// field; card_sum is not bucketed.
const bucketFeatures = `
entities:
  - {name: user, key: user_id}
sources:
  - {name: visits, topic: visits, schema: visit.avsc, event_time: ts}
features:
  - {name: by_merchant, version: 1, entity: user, source: visits, aggregation: sum, field: amount, bucket: merchant, window: 7d, owner: t, description: d}
  - {name: by_card, version: 1, entity: user, source: visits, aggregation: count, bucket: card, max_buckets: 3, window: 7d, owner: t, description: d}
  - {name: by_flag, version: 1, entity: user, source: visits, aggregation: avg, field: amount, bucket: flag, window: 7d, owner: t, description: d}
  - {name: by_merchant_too, version: 1, entity: user, source: visits, aggregation: max, field: amount, bucket: merchant, window: 7d, owner: t, description: d}
  - {name: card_sum, version: 1, entity: user, source: visits, aggregation: sum, field: card, window: 7d, owner: t, description: d}
`

// TestBucketKeys: the decoder reads each bucket field once per record as
// its bucket key (a string as it is, a long in base 10, a boolean as
// true/false, a null as __null__), through the projection (a null through
// the generic path); an unbucketed feature reads "".
func TestBucketKeys(t *testing.T) {
	cfg := loadConfigWith(t, bucketFeatures)
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan := plans["visits"]
	if !slices.Equal(plan.BucketFields, []string{"merchant", "card", "flag"}) {
		t.Fatalf("bucket fields %v", plan.BucketFields)
	}
	if !slices.Contains(plan.Reads(), "flag") {
		t.Errorf("reads %v lack the bucket field flag", plan.Reads())
	}
	dec := events.NewDecoder(cfg, events.Limits{})
	s := sourceSchema(t, cfg, "visits")
	for _, tt := range []struct {
		merchant string
		card     int64
		flag     any
		want     []string
	}{
		{"atm", 42, true, []string{"atm", "42", "true", "atm", ""}},
		{"", -7, false, []string{"", "-7", "false", "", ""}},
		{"café", 0, nil, []string{"café", "0", aggregations.NullBucket, "café", ""}},
	} {
		var ev events.Event
		// A null bucket is left to the generic path; the others are answered
		// by the projection (and checked below through Decode).
		if got := events.DecodeFast(dec, plan, []byte("u-1"), encode(t, s, visit(tt.merchant, tt.card, tt.flag, 1.5, now-1000)), now, &ev); got != (tt.flag != nil) {
			t.Fatalf("%v: answered by the fast path %v, want %v", tt.flag, got, tt.flag != nil)
		}
		if rej := dec.Decode(plan, []byte("u-1"), encode(t, s, visit(tt.merchant, tt.card, tt.flag, 1.5, now-1000)), now, &ev); rej != nil {
			t.Fatal(rej)
		}
		var got []string
		for i := range plan.Features {
			got = append(got, plan.Features[i].Bucket(&ev))
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q %d %v: buckets %q, want %q", tt.merchant, tt.card, tt.flag, got, tt.want)
		}
		if plan.Features[0].Value(&ev) != 1.5 {
			t.Errorf("value %v", plan.Features[0].Value(&ev))
		}
	}
	// A plan without buckets leaves Buckets empty, also on a reused Event.
	numbers := mustPlan(t, visitFeatures)
	var ev events.Event
	if rej := dec.Decode(plan, []byte("u-1"), encode(t, s, visit("m", 1, true, 1, now-1000)), now, &ev); rej != nil {
		t.Fatal(rej)
	}
	if rej := events.NewDecoder(loadConfigWith(t, visitFeatures), events.Limits{}).Decode(numbers, []byte("u-1"), encode(t, s, visit("m", 1, true, 1, now-1000)), now, &ev); rej != nil {
		t.Fatal(rej)
	}
	if len(ev.Buckets) != 0 {
		t.Errorf("an unbucketed plan left Buckets %q", ev.Buckets)
	}
}

// TestBucketKeyBounds: a string bucket key is bounded like a kept string
// (valid UTF-8, at most MaxStringBytes), since a tile keeps up to
// aggregations.BucketsMax of them: beyond, the record is rejected
// (invalid_string), by Decode and by Check (what produce sends) alike,
// whether the fast path or the generic one reads it.
func TestBucketKeyBounds(t *testing.T) {
	cfg := loadConfigWith(t, bucketFeatures)
	plan := mustPlan(t, bucketFeatures)
	dec := events.NewDecoder(cfg, events.Limits{})
	s := sourceSchema(t, cfg, "visits")
	for _, tt := range []struct {
		name, merchant string
		flag           any // nil: the generic path reads the record (a null bucket)
		reason         string
	}{
		{"at the limit", strings.Repeat("é", events.MaxStringBytes/2), true, ""},
		{"at the limit, generic path", strings.Repeat("é", events.MaxStringBytes/2), nil, ""},
		{"one byte over", strings.Repeat("a", events.MaxStringBytes+1), true, events.ReasonInvalidString},
		{"one byte over, generic path", strings.Repeat("a", events.MaxStringBytes+1), nil, events.ReasonInvalidString},
		{"invalid UTF-8", "caf\xe9", true, events.ReasonInvalidString},
		{"invalid UTF-8, generic path", "caf\xe9", nil, events.ReasonInvalidString},
	} {
		value := encode(t, s, visit(tt.merchant, 7, tt.flag, 1, now-1000))
		var ev events.Event
		rej := dec.Decode(plan, []byte("u-1"), value, now, &ev)
		switch {
		case tt.reason == "" && rej != nil:
			t.Errorf("%s: rejected %v", tt.name, rej)
		case tt.reason == "" && plan.Features[0].Bucket(&ev) != tt.merchant:
			t.Errorf("%s: bucket %q", tt.name, plan.Features[0].Bucket(&ev))
		case tt.reason != "" && (rej == nil || rej.Reason != tt.reason):
			t.Errorf("%s: Decode %v, want %s", tt.name, rej, tt.reason)
		}
		var scratch events.Event
		crej := dec.Check(plan, []byte("u-1"), value, now, &scratch)
		if (crej == nil) != (rej == nil) || crej != nil && crej.Reason != rej.Reason {
			t.Errorf("%s: Check %v, Decode %v", tt.name, crej, rej)
		}
	}
}
