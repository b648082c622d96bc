package events_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// rekeyNoWhereFeatures re-keys payments by (user_id, items) without a
// where, so the re-key plan has a fast path too.
const rekeyNoWhereFeatures = `
entities:
  - {name: user, key: user_id}
  - {name: user_items, keys: [user_id, items]}
sources:
  - {name: payments, topic: payments, schema: payment.avsc, event_time: ts, entity: user}
features:
  - {name: pay_count_7d, version: 1, entity: user, source: payments, aggregation: count, window: 7d, owner: t, description: d}
  - {name: pair_fee_max_7d, version: 1, entity: user_items, source: payments, aggregation: max, field: fee, window: 7d, owner: t, description: d}
`

// TestFastDecodeEqualsGeneric: for a plan without wheres over a schema of
// primitives and nullable primitives, Decode reads records written with the
// source's schema through a projection instead of goavro's native map. It
// must give exactly what the generic path gives, for every record: valid
// ones (same key, time, values, re-keyed keys: and these are answered by the
// fast path), invalid ones (same rejection, reason and detail) and
// malformed bytes (every truncation, byte flips, trailing bytes).
func TestFastDecodeEqualsGeneric(t *testing.T) {
	type planCase struct {
		name string
		cfg  *config.File
		plan func(map[string]*events.Plan, *config.File) *events.Plan
	}
	cases := []planCase{
		{"source plan with int and nullable double fields", loadConfig(t), func(p map[string]*events.Plan, _ *config.File) *events.Plan { return p["payments"] }},
		{"source plan re-keying by user_id and an int", loadConfigWith(t, rekeyNoWhereFeatures), func(p map[string]*events.Plan, _ *config.File) *events.Plan { return p["payments"] }},
		{"re-key plan", loadConfigWith(t, rekeyNoWhereFeatures), func(_ map[string]*events.Plan, cfg *config.File) *events.Plan {
			src, _ := cfg.Source("payments")
			return events.RekeyPlan(src.Repartitions[0])
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plans, err := events.Plans(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			plan := c.plan(plans, c.cfg)
			generic := events.GenericPlan(plan)
			dec := events.NewDecoder(c.cfg, events.Limits{MaxKeyBytes: 8})
			s := plan.Source.Schema
			rng := rand.New(rand.NewPCG(1, 2))
			var fast, gen, probe events.Event
			check := func(what string, key, val []byte) (answered bool) {
				t.Helper()
				rf := dec.Decode(plan, key, val, now, &fast)
				rg := dec.Decode(generic, key, val, now, &gen)
				switch {
				case (rf == nil) != (rg == nil):
					t.Fatalf("%s: fast path %v, generic %v", what, rf, rg)
				case rf != nil:
					if *rf != *rg {
						t.Fatalf("%s: fast path rejects with %v, generic with %v", what, rf, rg)
					}
				default:
					if fast.Key != gen.Key || fast.TS != gen.TS || !slices.Equal(fast.Values, gen.Values) || !slices.Equal(fast.Rekeyed, gen.Rekeyed) {
						t.Fatalf("%s: fast path %q %d %v %v, generic %q %d %v %v", what,
							fast.Key, fast.TS, fast.Values, fast.Rekeyed, gen.Key, gen.TS, gen.Values, gen.Rekeyed)
					}
				}
				return events.DecodeFast(dec, plan, key, val, now, &probe)
			}
			records := []struct {
				name  string
				key   string
				with  map[string]any
				valid bool
			}{
				{"valid", "u-1", nil, true},
				{"valid, null fee", "u-1", map[string]any{"fee": map[string]any{"null": nil}}, false},
				{"valid, negative items", "u-1", map[string]any{"items": int32(-7)}, true},
				{"key mismatch", "u-2", nil, false},
				{"empty key", "", map[string]any{"user_id": ""}, false},
				{"key too long", "u-123456789", map[string]any{"user_id": "u-123456789"}, false},
				{"future", "u-1", map[string]any{"ts": now + 25*3600_000}, false},
				{"before 1970", "u-1", map[string]any{"ts": int64(-5)}, false},
				{"NaN amount", "u-1", map[string]any{"amount": math.NaN()}, !slices.Contains(plan.Fields, "amount")}, // valid when not read
				{"infinite fee", "u-1", map[string]any{"fee": map[string]any{"double": math.Inf(1)}}, false},
			}
			for _, r := range records {
				val := encode(t, s, payment(r.with))
				if got := check(r.name, []byte(r.key), val); got != r.valid {
					t.Errorf("%s: answered by the fast path %v, want %v", r.name, got, r.valid)
				}
				for n := 0; n < len(val); n++ {
					check(r.name+" truncated", []byte(r.key), val[:n])
				}
				check(r.name+" trailing byte", []byte(r.key), append(slices.Clone(val), 0))
				for range 300 {
					m := slices.Clone(val)
					for range 1 + rng.IntN(3) {
						m[rng.IntN(len(m))] = byte(rng.IntN(256))
					}
					check(r.name+" mutated", []byte(r.key), m)
				}
			}
			for i := range 2000 { // random valid records
				key := []byte{'u', byte('a' + rng.IntN(26))}
				with := map[string]any{"user_id": string(key), "amount": rng.NormFloat64() * 1e6, "items": rng.Int32() - math.MaxInt32/2,
					"ts": now - rng.Int64N(1e10)}
				if i%3 == 0 {
					with["fee"] = map[string]any{"null": nil}
				} else {
					with["fee"] = map[string]any{"double": rng.Float64()}
				}
				check("random", key, encode(t, s, payment(with)))
			}
		})
	}
}

// TestNoFastPathWithAWhere: a where needs goavro's native record, so such
// a plan decodes every record generically (and still gives its values).
func TestNoFastPathWithAWhere(t *testing.T) {
	cfg := loadConfigWith(t, filteredFeatures)
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan := plans["payments"]
	dec := events.NewDecoder(cfg, events.Limits{})
	val := encode(t, plan.Source.Schema, payment(nil))
	var ev events.Event
	if events.DecodeFast(dec, plan, []byte("u-1"), val, now, &ev) {
		t.Fatal("a plan with wheres has a fast path")
	}
	if rej := dec.Decode(plan, []byte("u-1"), val, now, &ev); rej != nil {
		t.Fatal(rej)
	}
}
