package events_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/schemas"
)

// stringFeatures: merchants is a last (or first, first_k, last_k: the
// aggregation is replaced in TestKeptStrings) of the string field
// merchant; card_sum is a number feature of the same source.
const stringFeatures = `
entities:
  - {name: user, key: user_id}
sources:
  - {name: visits, topic: visits, schema: visit.avsc, event_time: ts}
features:
  - {name: merchants, version: 1, entity: user, source: visits, aggregation: last, field: merchant, window: 7d, owner: t, description: d}
  - {name: card_sum, version: 1, entity: user, source: visits, aggregation: sum, field: card, window: 7d, owner: t, description: d}
`

// numberFeatures are stringFeatures with an approx_distinct of merchant:
// no string slot.
var numberFeatures = strings.Replace(stringFeatures, "aggregation: last,", "aggregation: approx_distinct,", 1)

func TestKeptStrings(t *testing.T) {
	for _, k := range []aggregations.Kind{aggregations.Last, aggregations.First, aggregations.FirstK, aggregations.LastK} {
		agg := "aggregation: " + k.String() + ","
		if k.List() {
			agg += " k: 2,"
		}
		cfg := loadConfigWith(t, strings.Replace(stringFeatures, "aggregation: last,", agg, 1))
		if !cfg.Features[0].Window.Strings() {
			t.Fatalf("%v: the config did not make the string feature's window WithStrings", k)
		}
		plans, err := events.Plans(cfg)
		if err != nil {
			t.Fatal(err)
		}
		plan := plans["visits"]
		if !slices.Equal(plan.Encodings, []events.Encoding{events.EncodeString, events.EncodeNumber}) {
			t.Fatalf("%v: fields %v encodings %v", k, plan.Fields, plan.Encodings)
		}
		dec := events.NewDecoder(cfg, events.Limits{})
		s := sourceSchema(t, cfg, "visits")
		if !events.DecodeFast(dec, plan, []byte("u-1"), encode(t, s, visit("m", 7, true, 1, now-1000)), now, &events.Event{}) {
			t.Fatalf("%v: a plan with a string slot is not answered by the fast path", k)
		}
		var ev events.Event
		for _, m := range []string{"café-42", "", "atm"} {
			if rej := dec.Decode(plan, []byte("u-1"), encode(t, s, visit(m, 7, true, 1, now-1000)), now, &ev); rej != nil {
				t.Fatalf("%v %q: %v", k, m, rej)
			}
			if got := plan.Features[0].Str(&ev); got != m || ev.Values[0] != 0 {
				t.Errorf("%v: merchant %q read as %q, value %v", k, m, got, ev.Values[0])
			}
			if got := plan.Features[1].Str(&ev); got != "" || plan.Features[1].Value(&ev) != 7 {
				t.Errorf("%v: card_sum reads %q, %v", k, got, plan.Features[1].Value(&ev))
			}
		}
		numbers := mustPlan(t, numberFeatures)
		if rej := dec.Decode(numbers, []byte("u-1"), encode(t, s, visit("m", 7, true, 1, now-1000)), now, &ev); rej != nil {
			t.Fatal(rej)
		}
		if len(ev.Strs) != 0 {
			t.Errorf("%v: a number plan left Strs %q", k, ev.Strs)
		}
	}
}

// TestKeptStringBounds: a kept string must be valid UTF-8 and at most
// MaxStringBytes long, else the record is rejected (invalid_string, a dead
// letter); the same string under approx_distinct (a hash) is not bounded.
func TestKeptStringBounds(t *testing.T) {
	cfg := loadConfigWith(t, stringFeatures)
	plan := mustPlan(t, stringFeatures)
	dec := events.NewDecoder(cfg, events.Limits{})
	s := sourceSchema(t, cfg, "visits")
	for _, tt := range []struct {
		name, merchant string
		reason         string // "": accepted
	}{
		{"at the limit", strings.Repeat("é", events.MaxStringBytes/2), ""},
		{"one byte over", strings.Repeat("a", events.MaxStringBytes+1), events.ReasonInvalidString},
		{"invalid UTF-8", "caf\xe9", events.ReasonInvalidString},
		{"a lone continuation byte", "\x80", events.ReasonInvalidString},
	} {
		var ev events.Event
		rej := dec.Decode(plan, []byte("u-1"), encode(t, s, visit(tt.merchant, 7, true, 1, now-1000)), now, &ev)
		switch {
		case tt.reason == "" && rej != nil:
			t.Errorf("%s: rejected %v", tt.name, rej)
		case tt.reason == "" && plan.Features[0].Str(&ev) != tt.merchant:
			t.Errorf("%s: read %q", tt.name, plan.Features[0].Str(&ev))
		case tt.reason != "" && (rej == nil || rej.Reason != tt.reason):
			t.Errorf("%s: %v, want %s", tt.name, rej, tt.reason)
		}
		if rej, _ := decodeWith(t, dec, mustPlan(t, numberFeatures), s, tt.merchant); rej != nil {
			t.Errorf("%s: approx_distinct rejected it: %v", tt.name, rej)
		}
	}
}

func decodeWith(t *testing.T, dec *events.Decoder, plan *events.Plan, s *schemas.Schema, merchant string) (*events.Rejection, events.Event) {
	t.Helper()
	var ev events.Event
	return dec.Decode(plan, []byte("u-1"), encode(t, s, visit(merchant, 7, true, 1, now-1000)), now, &ev), ev
}
