package events_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// visitFeatures count distinct merchants (string), cards (long, also
// summed) and flags (nullable boolean), and distinct amounts (double).
const visitFeatures = `
entities:
  - {name: user, key: user_id}
sources:
  - {name: visits, topic: visits, schema: visit.avsc, event_time: ts}
features:
  - {name: merchants, version: 1, entity: user, source: visits, aggregation: approx_distinct, field: merchant, window: 7d, owner: t, description: d}
  - {name: cards, version: 1, entity: user, source: visits, aggregation: approx_distinct, field: card, window: 7d, owner: t, description: d}
  - {name: card_sum, version: 1, entity: user, source: visits, aggregation: sum, field: card, window: 7d, owner: t, description: d}
  - {name: flags, version: 1, entity: user, source: visits, aggregation: approx_distinct, field: flag, window: lifetime, owner: t, description: d}
  - {name: amounts, version: 1, entity: user, source: visits, aggregation: approx_distinct, field: amount, window: 7d, owner: t, description: d}
`

func visit(merchant string, card int64, flag any, amount float64, ts int64) map[string]any {
	f := any(nil)
	if flag != nil {
		f = map[string]any{"boolean": flag}
	}
	return map[string]any{"user_id": "u-1", "merchant": merchant, "card": card, "flag": f, "amount": amount, "ts": ts}
}

// TestDistinctSlots: a long field read by approx_distinct and by sum has
// one slot of each encoding; the string, boolean and double fields one each.
func TestDistinctSlots(t *testing.T) {
	plan := mustPlan(t, visitFeatures)
	type slot struct {
		name string
		enc  events.Encoding
	}
	var got []slot
	for i, f := range plan.Fields {
		got = append(got, slot{f, plan.Encodings[i]})
	}
	want := []slot{{"merchant", events.EncodeDistinct}, {"card", events.EncodeDistinct}, {"card", events.EncodeNumber},
		{"flag", events.EncodeBool}, {"amount", events.EncodeNumber}}
	if !slices.Equal(got, want) {
		t.Fatalf("slots %v, want %v", got, want)
	}
	if n := len(plan.Reads()); n != 6 { // user_id, ts, merchant, card, flag, amount
		t.Errorf("reads %v: a field read twice is read once", plan.Reads())
	}
}

// TestDistinctValues: what approx_distinct sees of each type. Equal values
// give equal numbers and distinct ones distinct numbers (longs beyond 2^53
// included, which a double would round together); a long within 2^53 and a
// boolean are their plain numbers; every number is finite; a null boolean
// is an invalid field.
func TestDistinctValues(t *testing.T) {
	cfg := loadConfigWith(t, visitFeatures)
	plan := mustPlan(t, visitFeatures)
	dec := events.NewDecoder(cfg, events.Limits{})
	s := sourceSchema(t, cfg, "visits")
	decode := func(rec map[string]any) []float64 {
		t.Helper()
		var ev events.Event
		if rej := dec.Decode(plan, []byte("u-1"), encode(t, s, rec), now, &ev); rej != nil {
			t.Fatalf("decode %v: %v", rec, rej)
		}
		return slices.Clone(ev.Values)
	}
	const big = int64(1) << 60
	a := decode(visit("m-1", big, true, 2.5, now-1000))
	b := decode(visit("m-1", big+1, false, 2.5, now-2000))
	c := decode(visit("m-2", 42, true, 2.5, now-3000))
	again := decode(visit("m-2", 42, true, 2.5, now-4000))
	for i, v := range slices.Concat(a, b, c) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Errorf("value %d is %v, want finite", i, v)
		}
	}
	// Slots: merchant, card (distinct), card (number), flag, amount.
	if a[0] != b[0] || a[0] == c[0] {
		t.Errorf("merchant: m-1 %v, m-1 %v, m-2 %v; want equal strings equal and others different", a[0], b[0], c[0])
	}
	if a[1] == b[1] {
		t.Errorf("card: 2^60 and 2^60+1 both read as %v", a[1])
	}
	if float64(big) != float64(big+1) {
		t.Fatal("the test needs two longs a double cannot tell apart")
	}
	if c[1] != 42 || c[2] != 42 || a[2] != float64(big) {
		t.Errorf("card 42 reads %v (distinct) and %v (number), 2^60 as a number %v", c[1], c[2], a[2])
	}
	if a[3] != 1 || b[3] != 0 {
		t.Errorf("flag true %v, false %v; want 1 and 0", a[3], b[3])
	}
	if !slices.Equal(c, again) {
		t.Errorf("the same values read %v, then %v", c, again)
	}
	var ev events.Event
	if rej := dec.Decode(plan, []byte("u-1"), encode(t, s, visit("m-1", 1, nil, 1, now-1000)), now, &ev); rej == nil || rej.Reason != events.ReasonInvalidField {
		t.Errorf("null flag: %v, want invalid_field", rej)
	}
}

// TestDistinctAgainstBruteForce decodes random visits and folds them into a
// series per feature, as the workers and backfill do, and compares every
// read with aggtest.BruteForceDistinct over the typed values: exact up to
// DistinctExactMax distinct values, within the sketch's error beyond. Pools
// of merchants, cards (longs beyond 2^53 that differ in their last bits)
// and flags of several sizes cross the exact limit.
func TestDistinctAgainstBruteForce(t *testing.T) {
	cfg := loadConfigWith(t, visitFeatures)
	plan := mustPlan(t, visitFeatures)
	dec := events.NewDecoder(cfg, events.Limits{})
	s := sourceSchema(t, cfg, "visits")
	h := aggregations.Hour
	for seed, pool := range []int{3, 100, 2000} {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		series := make([]aggregations.Series, len(plan.Features))
		var merchants []aggtest.Typed[string]
		var cards []aggtest.Typed[int64]
		var flags []aggtest.Typed[bool]
		for i := range 3000 {
			ts := now - rng.Int64N(10*24*h)
			m := fmt.Sprintf("merchant-%d", rng.IntN(pool))
			card := int64(1)<<58 + rng.Int64N(int64(pool))
			flag := rng.IntN(3) == 0
			var ev events.Event
			if rej := dec.Decode(plan, []byte("u-1"), encode(t, s, visit(m, card, flag, 1, ts)), now, &ev); rej != nil {
				t.Fatal(rej)
			}
			seq := int64(i)
			for j := range plan.Features {
				f := &plan.Features[j]
				series[j].Apply(f.Window, aggregations.Event{TS: ts, Seq: seq, Value: f.Value(&ev)}, now)
			}
			merchants = append(merchants, aggtest.Typed[string]{TS: ts, Seq: seq, Value: m})
			cards = append(cards, aggtest.Typed[int64]{TS: ts, Seq: seq, Value: card})
			flags = append(flags, aggtest.Typed[bool]{TS: ts, Seq: seq, Value: flag})
		}
		for _, T := range []int64{now, now + 24*h, now + 5*24*h, now + 20*24*h} { // reads at or after the clock are exact
			for j := range plan.Features {
				f := &plan.Features[j]
				var want float64
				switch f.Feature.Name {
				case "merchants":
					want = aggtest.BruteForceDistinct(f.Window, merchants, T)
				case "cards":
					want = aggtest.BruteForceDistinct(f.Window, cards, T)
				case "flags":
					want = aggtest.BruteForceDistinct(f.Window, flags, T)
				default:
					continue
				}
				got, ok := aggregations.Finalize(f.Kind, series[j].Read(f.Window, T))
				if !ok || !aggtest.Within(f.Kind, got, want) {
					t.Errorf("pool %d, T=now+%dh: %s = %v (%v), want %v", pool, (T-now)/h, f.ID, got, ok, want)
				}
			}
		}
	}
}

func mustPlan(t *testing.T, features string) *events.Plan {
	t.Helper()
	plans, err := events.Plans(loadConfigWith(t, features))
	if err != nil {
		t.Fatal(err)
	}
	return plans["visits"]
}

// keptFeatures keep long and boolean values as they are.
const keptFeatures = `
entities:
  - {name: user, key: user_id}
sources:
  - {name: visits, topic: visits, schema: visit.avsc, event_time: ts}
features:
  - {name: last_card, version: 1, entity: user, source: visits, aggregation: last, field: card, window: 7d, owner: t, description: d}
  - {name: first_flag, version: 1, entity: user, source: visits, aggregation: first, field: flag, window: 7d, owner: t, description: d}
  - {name: cards3, version: 1, entity: user, source: visits, aggregation: last_k, k: 3, field: card, window: 7d, owner: t, description: d}
  - {name: card_sum, version: 1, entity: user, source: visits, aggregation: sum, field: card, window: 7d, owner: t, description: d}
`

// TestKeptValues: last, first and the lists read a long exactly (up to
// ±2^53 included; one slot for all of them, another for sum, which rounds
// and accepts any long) and a boolean as 0 or 1; their output type is the
// field's.
func TestKeptValues(t *testing.T) {
	cfg := loadConfigWith(t, keptFeatures)
	plan := mustPlan(t, keptFeatures)
	if !slices.Equal(plan.Encodings, []events.Encoding{events.EncodeExactLong, events.EncodeBool, events.EncodeNumber}) {
		t.Fatalf("fields %v encodings %v", plan.Fields, plan.Encodings)
	}
	for _, f := range cfg.Features {
		want := map[string]aggregations.ValueType{"last_card": aggregations.TypeLong, "first_flag": aggregations.TypeBool,
			"cards3": aggregations.TypeLong, "card_sum": aggregations.TypeDouble}[f.Name]
		if f.OutputType() != want {
			t.Errorf("%s: output type %v, want %v", f.ID, f.OutputType(), want)
		}
	}
	dec := events.NewDecoder(cfg, events.Limits{})
	s := sourceSchema(t, cfg, "visits")
	for _, c := range []struct {
		card int64
		flag bool
	}{{1 << 53, false}, {-(1 << 53), true}, {-7, true}} {
		var ev events.Event
		if rej := dec.Decode(plan, []byte("u-1"), encode(t, s, visit("m", c.card, c.flag, 1, now-1000)), now, &ev); rej != nil {
			t.Fatalf("card %d: %v", c.card, rej)
		}
		wantFlag := 0.0
		if c.flag {
			wantFlag = 1
		}
		if int64(ev.Values[0]) != c.card || ev.Values[1] != wantFlag {
			t.Errorf("card %d flag %v read as %v", c.card, c.flag, ev.Values)
		}
	}
}

// TestLongAloneSkipsTheFastPath: a plan whose only non-number field is a
// plain long (a schema the fast projection could read as a double) still
// reads it as its encoding says: approx_distinct tells apart two longs
// beyond 2^53 that a double rounds together, and last rejects such a long
// instead of rounding it.
func TestLongAloneSkipsTheFastPath(t *testing.T) {
	decodeCard := func(aggregation string, card int64) (events.Event, *events.Rejection) {
		t.Helper()
		cfg := loadConfigWith(t, `
entities:
  - {name: user, key: user_id}
sources:
  - {name: visits, topic: visits, schema: visit.avsc, event_time: ts}
features:
  - {name: cards, version: 1, entity: user, source: visits, aggregation: `+aggregation+`, field: card, window: 7d, owner: t, description: d}
`)
		plans, err := events.Plans(cfg) // the decoder's own schemas, so the fast path may answer
		if err != nil {
			t.Fatal(err)
		}
		var ev events.Event
		rej := events.NewDecoder(cfg, events.Limits{}).Decode(plans["visits"], []byte("u-1"),
			encode(t, sourceSchema(t, cfg, "visits"), visit("m-1", card, true, 1, now-1000)), now, &ev)
		return ev, rej
	}
	const big = int64(1) << 60
	a, rejA := decodeCard("approx_distinct", big)
	b, rejB := decodeCard("approx_distinct", big+1)
	if rejA != nil || rejB != nil {
		t.Fatal(rejA, rejB)
	}
	if a.Values[0] == b.Values[0] {
		t.Errorf("approx_distinct: 2^60 and 2^60+1 both read as %v", a.Values[0])
	}
	if ev, rej := decodeCard("last", big+1); rej == nil {
		t.Errorf("last: a long beyond 2^53 was read as %v, want a rejection", ev.Values)
	}
}
