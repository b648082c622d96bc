package events_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/schemas"
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

// TestFastPathWithAWhere: a plan with wheres decodes records through its
// projection too, evaluating each where over the projected fields.
func TestFastPathWithAWhere(t *testing.T) {
	cfg := loadConfigWith(t, filteredFeatures)
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan := plans["payments"]
	dec := events.NewDecoder(cfg, events.Limits{})
	for _, tt := range []struct {
		rec  map[string]any
		want []float64 // amount, then the three wheres
	}{
		{payment(map[string]any{"amount": 12.5, "items": int32(3)}), []float64{12.5, 1, 1, 1}},
		{payment(map[string]any{"amount": 5000.0, "items": int32(4)}), []float64{5000, 1, 0, 0}},
		{payment(map[string]any{"user_id": "u-0", "amount": 1.0, "items": int32(1)}), []float64{1, 0, 0, 1}},
	} {
		key := []byte(tt.rec["user_id"].(string))
		var ev events.Event
		if !events.DecodeFast(dec, plan, key, encode(t, plan.Source.Schema, tt.rec), now, &ev) {
			t.Fatalf("%v: not answered by the fast path", tt.rec)
		}
		if !slices.Equal(ev.Values, tt.want) {
			t.Errorf("%v: values %v, want %v", tt.rec, ev.Values, tt.want)
		}
	}
	// int(1e300) fails: the fast path declines, the generic path rejects.
	val := encode(t, plan.Source.Schema, payment(map[string]any{"amount": 1e300}))
	var ev events.Event
	if events.DecodeFast(dec, plan, []byte("u-1"), val, now, &ev) {
		t.Fatal("a failing where answered by the fast path")
	}
	if rej := dec.Decode(plan, []byte("u-1"), val, now, &ev); rej == nil || rej.Reason != events.ReasonFilterError {
		t.Fatalf("int(1e300): %v, want %s", rej, events.ReasonFilterError)
	}
}

// evilVisitFeatures read every kind of field of visit.avsc every way a
// plan can: kept strings, longs and booleans, distinct counts of a string
// and a long, buckets by a string, a long and a nullable boolean, and
// wheres over all of them that fail on some records (int() of a huge
// double, a division by zero, a null flag negated) or cannot
// (config.Filter.Total, which Check skips), re-keyed by merchant.
const evilVisitFeatures = `
entities:
  - {name: user, key: user_id}
  - {name: merchant, key: merchant}
sources:
  - {name: visits, topic: visits, schema: visit.avsc, event_time: ts, entity: user}
features:
  - {name: v_sum, version: 1, entity: user, source: visits, aggregation: sum, field: amount, window: 7d, owner: t, description: d, where: "int(amount) % 7 != card % 7"}
  - {name: v_last_merchant, version: 1, entity: user, source: visits, aggregation: last, field: merchant, window: 7d, owner: t, description: d}
  - {name: v_first_cards, version: 1, entity: user, source: visits, aggregation: first_k, k: 2, field: card, window: 7d, owner: t, description: d}
  - {name: v_flag_last, version: 1, entity: user, source: visits, aggregation: last, field: flag, window: 7d, owner: t, description: d}
  - {name: v_merchants, version: 1, entity: user, source: visits, aggregation: approx_distinct, field: merchant, window: 7d, owner: t, description: d, where: "merchant.startsWith('m') || card / (card - 1) > 0"}
  - {name: v_cards, version: 1, entity: user, source: visits, aggregation: approx_distinct, field: card, window: 7d, owner: t, description: d, bucket: merchant}
  - {name: v_card_sum, version: 1, entity: user, source: visits, aggregation: sum, field: card, window: 7d, owner: t, description: d, bucket: card}
  - {name: v_by_flag, version: 1, entity: user, source: visits, aggregation: count, window: 7d, owner: t, description: d, bucket: flag, where: "!flag || ts % 2 == 0"}
  - {name: v_flag_count, version: 1, entity: user, source: visits, aggregation: count, window: 7d, owner: t, description: d, where: "flag == true || card > 3"}
  - {name: v_recent_by_card, version: 1, entity: user, source: visits, aggregation: last_k, k: 2, field: merchant, bucket: card, window: 7d, owner: t, description: d}
  - {name: m_count, version: 1, entity: merchant, source: visits, aggregation: count, window: 1d, owner: t, description: d, where: "amount > 100.0 && user_id != 'u-0'"}
  - {name: m_last_user, version: 1, entity: merchant, source: visits, aggregation: last, field: user_id, window: 1d, owner: t, description: d}
`

// fastCase is one plan of TestFastDecodeEqualsGenericRandom.
type fastCase struct {
	name string
	cfg  *config.File
	plan *events.Plan
}

// fastCases are every plan of the demo feature file (with its where) and
// of evilVisitFeatures: source, repartition and re-key plans.
func fastCases(t testing.TB) []fastCase {
	var cases []fastCase
	for label, cfg := range map[string]*config.File{"demo": demoConfig(t, true), "visits": loadConfigWith(t, evilVisitFeatures),
		"evolution": evolutionConfigTB(t, "single-object", "    writer_schemas: [v1.avsc, v3.avsc, bad.avsc]", "http://127.0.0.1:1")} {
		plans, err := events.Plans(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var topics []string
		for topic := range plans {
			topics = append(topics, topic)
		}
		slices.Sort(topics)
		for _, topic := range topics {
			cases = append(cases, fastCase{label + " " + topic, cfg, plans[topic]})
		}
		for _, src := range cfg.Sources {
			for _, r := range src.Repartitions {
				cases = append(cases, fastCase{label + " re-key " + r.Topic, cfg, events.RekeyPlan(r)})
			}
		}
	}
	return cases
}

// randomNative is a native record of s: mostly ordinary values, and now
// and then an edge one (an empty, over-long or invalid UTF-8 string, NaN,
// ±Inf, a double beyond int's range, a long beyond 2^53, an event time
// before 1970 or in the future, a null).
func randomNative(rng *rand.Rand, s *schemas.Schema) map[string]any {
	pick := func(common, edge []any) any {
		if rng.IntN(6) == 0 {
			return edge[rng.IntN(len(edge))]
		}
		return common[rng.IntN(len(common))]
	}
	rec := map[string]any{}
	for _, f := range s.Fields {
		var v any
		switch {
		case f.Type == "string":
			v = pick([]any{"u-1", "u-2", "m1", "m22", "EUR", "JPY", "x", "café"},
				[]any{"", "u-0", "u-123456789", strings.Repeat("é", events.MaxStringBytes/2), strings.Repeat("a", events.MaxStringBytes+1), "caf\xe9", "\x80"})
		case f.Type == "double":
			v = pick([]any{12.5, 150.0, 100.0, -3.25, 0.0, rng.NormFloat64() * 1000},
				[]any{math.NaN(), math.Inf(1), math.Inf(-1), 1e300, -1e19, math.Copysign(0, -1), 1e-320})
		case f.Type == "long" && f.LogicalType == "timestamp-millis":
			v = pick([]any{now - 60_000, now - rng.Int64N(1e10), now - 1, now + 1},
				[]any{int64(-5), now + 25*3600_000, int64(math.MaxInt64), int64(math.MinInt64), int64(0)})
		case f.Type == "long":
			v = pick([]any{int64(0), int64(1), int64(7), int64(-7), rng.Int64N(1e6)},
				[]any{int64(1 << 53), int64(1<<53 + 1), int64(-(1 << 53) - 1), int64(math.MaxInt64), int64(math.MinInt64), rng.Int64()})
		case f.Type == "int":
			v = pick([]any{int32(0), int32(3), int32(-7)}, []any{int32(math.MaxInt32), int32(math.MinInt32)})
		case f.Type == "boolean":
			v = rng.IntN(2) == 1
		default:
			panic("randomNative: no generator for " + f.Type)
		}
		if f.Nullable {
			if rng.IntN(5) == 0 {
				v = nil
			} else {
				v = map[string]any{f.Type: v}
			}
		}
		rec[f.Name] = v
	}
	return rec
}

// recordKey is the Kafka key plan expects of rec (keys.EntityKey of its key
// fields, as a producer would key it), or now and then another one.
func recordKey(rng *rand.Rand, plan *events.Plan, rec map[string]any) []byte {
	if rng.IntN(20) == 0 {
		return []byte("u-2")
	}
	var vals []string
	for _, k := range plan.KeyFields {
		v, _ := schemas.String(rec, k)
		vals = append(vals, v)
	}
	return []byte(keys.EntityKey(vals))
}

// sameDecode fails t unless the fast and the generic decodes agree: the
// same rejection (reason and detail), or the same event.
func sameDecode(t *testing.T, what string, rf, rg *events.Rejection, fast, gen *events.Event) {
	t.Helper()
	switch {
	case (rf == nil) != (rg == nil):
		t.Fatalf("%s: fast path %v, generic %v", what, rf, rg)
	case rf != nil:
		if *rf != *rg {
			t.Fatalf("%s: fast path rejects with %v, generic with %v", what, rf, rg)
		}
	default:
		bits := func(vs []float64) []uint64 {
			var out []uint64
			for _, v := range vs {
				out = append(out, math.Float64bits(v))
			}
			return out
		}
		if fast.Key != gen.Key || fast.TS != gen.TS || !slices.Equal(bits(fast.Values), bits(gen.Values)) || !slices.Equal(fast.Rekeyed, gen.Rekeyed) ||
			!slices.Equal(fast.Strs, gen.Strs) || !slices.Equal(fast.Buckets, gen.Buckets) {
			t.Fatalf("%s: fast path %q %d %v %q %q %q, generic %q %d %v %q %q %q", what,
				fast.Key, fast.TS, fast.Values, fast.Rekeyed, fast.Strs, fast.Buckets, gen.Key, gen.TS, gen.Values, gen.Rekeyed, gen.Strs, gen.Buckets)
		}
	}
}

// sameVerdict fails t unless Check's verdict rc is the generic decode's rg.
func sameVerdict(t *testing.T, what string, rc, rg *events.Rejection) {
	t.Helper()
	if (rc == nil) != (rg == nil) || (rc != nil && *rc != *rg) {
		t.Fatalf("%s: Check %v, generic Decode %v", what, rc, rg)
	}
}

// TestFastDecodeEqualsGenericRandom: for every plan of the demo feature
// file (its where, bucket by currency, kept strings and longs, distinct
// counts, booleans, re-keyings) and of evilVisitFeatures (wheres that fail,
// nullable fields, buckets by a long and a boolean), random records give
// exactly the generic path's event or the generic path's rejection (reason
// and detail), whether or not the fast path answers; malformed bytes and
// records of other writer schemas (evolved ones, another source's) too.
// Check gives the same verdict.
// Every plan has a fast path and it answers most valid records.
func TestFastDecodeEqualsGenericRandom(t *testing.T) {
	for _, c := range fastCases(t) {
		t.Run(c.name, func(t *testing.T) {
			if !events.HasFast(c.plan) {
				t.Fatal("no fast path")
			}
			generic := events.GenericPlan(c.plan)
			dec := events.NewDecoder(c.cfg, events.Limits{MaxKeyBytes: 8})
			s := c.plan.Source.Schema
			rng := rand.New(rand.NewPCG(3, 4))
			var fast, gen, probe, checked events.Event // reused, as callers do
			accepted, answered := 0, 0
			reasons := map[string]int{}
			writers := c.cfg.WriterSchemas()
			for i := range 5000 {
				w := s
				if rng.IntN(4) == 0 { // another schema of the file: an evolved writer, or another source's
					w = writers[rng.IntN(len(writers))]
				}
				rec := randomNative(rng, w)
				val, err := w.Encode(nil, rec)
				if err != nil {
					t.Fatalf("encode %v: %v", rec, err)
				}
				key := recordKey(rng, c.plan, rec)
				rf := dec.Decode(c.plan, key, val, now, &fast)
				rg := dec.Decode(generic, key, val, now, &gen)
				sameDecode(t, fmt.Sprintf("record %d %v key %q", i, rec, key), rf, rg, &fast, &gen)
				sameVerdict(t, fmt.Sprintf("record %d %v key %q", i, rec, key), dec.Check(c.plan, key, val, now, &checked), rg)
				ok := events.DecodeFast(dec, c.plan, key, val, now, &probe)
				if ok && rg != nil {
					t.Fatalf("record %d %v: the fast path answered a record the generic path rejects (%v)", i, rec, rg)
				}
				if rg == nil {
					accepted++
					if ok {
						answered++
					}
				} else {
					reasons[rg.Reason]++
				}
				if i%50 == 0 { // malformed: truncations, flipped bytes, a trailing byte
					for n := 0; n < len(val); n++ {
						rf, rg := dec.Decode(c.plan, key, val[:n], now, &fast), dec.Decode(generic, key, val[:n], now, &gen)
						sameDecode(t, fmt.Sprintf("record %d truncated to %d", i, n), rf, rg, &fast, &gen)
						sameVerdict(t, fmt.Sprintf("record %d truncated to %d", i, n), dec.Check(c.plan, key, val[:n], now, &checked), rg)
					}
					for range 20 {
						m := slices.Clone(val)
						for range 1 + rng.IntN(3) {
							m[rng.IntN(len(m))] = byte(rng.IntN(256))
						}
						rf, rg := dec.Decode(c.plan, key, m, now, &fast), dec.Decode(generic, key, m, now, &gen)
						sameDecode(t, fmt.Sprintf("record %d mutated %x", i, m), rf, rg, &fast, &gen)
						sameVerdict(t, fmt.Sprintf("record %d mutated %x", i, m), dec.Check(c.plan, key, m, now, &checked), rg)
					}
					m := append(slices.Clone(val), 0)
					rf, rg := dec.Decode(c.plan, key, m, now, &fast), dec.Decode(generic, key, m, now, &gen)
					sameDecode(t, fmt.Sprintf("record %d with a trailing byte", i), rf, rg, &fast, &gen)
				}
			}
			t.Logf("%d of 5000 accepted, %d of them by the fast path; rejections %v", accepted, answered, reasons)
			if accepted < 500 || answered < accepted*7/10 {
				t.Fatalf("%d accepted, %d by the fast path: the generator or the fast path is off", accepted, answered)
			}
		})
	}
}

// FuzzFastDecodeEqualsGeneric: for any Avro body written (or not) with the
// demo transactions schema, under any Kafka key, every plan of the demo
// feature file decodes it on the fast path exactly as on the generic path
// (the same event or the same rejection), and Check gives the same verdict.
// Run with `make fuzz`.
func FuzzFastDecodeEqualsGeneric(f *testing.F) {
	var cfg *config.File
	var plans []*events.Plan
	for _, c := range fastCases(f) {
		if strings.HasPrefix(c.name, "demo ") && c.plan.Source.Name == "transactions" {
			cfg = c.cfg
			plans = append(plans, c.plan)
		}
	}
	src, _ := cfg.Source("transactions")
	s := src.Schema
	dec := events.NewDecoder(cfg, events.Limits{MaxKeyBytes: 8})
	rng := rand.New(rand.NewPCG(7, 8))
	for range 20 {
		rec := randomNative(rng, s)
		val, err := s.Encode(nil, rec)
		if err != nil {
			f.Fatal(err)
		}
		key, _ := schemas.String(rec, "user_id")
		f.Add([]byte(key), val[10:]) // the body, after the single-object header
	}
	f.Fuzz(func(t *testing.T, key, body []byte) {
		val := append(s.AppendSingleObjectHeader(nil), body...)
		var fast, gen, checked events.Event
		if len(plans) != 5 {
			t.Fatalf("%d plans of the demo's transactions, want 5", len(plans))
		}
		for _, plan := range plans {
			rf := dec.Decode(plan, key, val, now, &fast)
			rg := dec.Decode(events.GenericPlan(plan), key, val, now, &gen)
			sameDecode(t, fmt.Sprintf("plan %s, key %q, body %x", plan.Topic, key, body), rf, rg, &fast, &gen)
			sameVerdict(t, fmt.Sprintf("plan %s, key %q, body %x", plan.Topic, key, body), dec.Check(plan, key, val, now, &checked), rg)
		}
	})
}
