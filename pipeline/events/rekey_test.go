package events_test

import (
	"slices"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/pipeline/events"
)

// rekeyFeatures: payments are keyed by user; the payer-and-fee-bucket pair
// is a composite entity whose features are re-keyed.
const rekeyFeatures = `
entities:
  - {name: user, key: user_id}
  - {name: user_items, keys: [user_id, items]}
sources:
  - {name: payments, topic: payments, schema: payment.avsc, event_time: ts, entity: user}
features:
  - {name: pay_count_7d, version: 1, entity: user, source: payments, aggregation: count, window: 7d, owner: t, description: d}
  - {name: pair_fee_max_7d, version: 1, entity: user_items, source: payments, aggregation: max, field: fee, window: 7d, owner: t, description: d, where: "amount > 1.0"}
`

func TestRekeyPlans(t *testing.T) {
	cfg := loadConfigWith(t, rekeyFeatures)
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const rtopic = "featurepipe.repartition.payments.user_items"
	src, rep := plans["payments"], plans[rtopic]
	if src == nil || rep == nil || len(plans) != 2 {
		t.Fatalf("plans for %v, want payments and %s", slices.Collect(func(yield func(string) bool) {
			for k := range plans {
				if !yield(k) {
					return
				}
			}
		}), rtopic)
	}
	if !slices.Equal(src.IDs(), []string{"pay_count_7d@1"}) || len(src.Rekeys) != 1 || src.Rekeys[0].Topic != rtopic {
		t.Errorf("source plan: features %v, rekeys %v; want its own feature and one re-keying", src.IDs(), src.Rekeys)
	}
	if !slices.Contains(src.Fields, "fee") {
		t.Errorf("source plan fields %v: the re-keyed feature's field is not validated at the source", src.Fields)
	}
	if rep.Repartition == nil || rep.Entity != "user_items" || !slices.Equal(rep.KeyFields, []string{"user_id", "items"}) ||
		!slices.Equal(rep.IDs(), []string{"pair_fee_max_7d@1"}) {
		t.Errorf("repartition plan: entity %s keys %v features %v", rep.Entity, rep.KeyFields, rep.IDs())
	}

	dec := events.NewDecoder(cfg, events.Limits{})
	s := sourceSchema(t, cfg, "payments")
	now := time.Now().UnixMilli()
	val := encode(t, s, map[string]any{"user_id": "u1", "amount": 5.0, "fee": map[string]any{"double": 0.5}, "items": int32(3), "ts": now - 1000})
	var ev events.Event
	if rej := dec.Decode(src, []byte("u1"), val, now, &ev); rej != nil {
		t.Fatalf("source decode: %v", rej)
	}
	const pair = `["u1","3"]`
	if ev.Key != "u1" || !slices.Equal(ev.Rekeyed, []string{pair}) {
		t.Errorf("source event key %q rekeyed %q, want u1 and [%s]", ev.Key, ev.Rekeyed, pair)
	}
	// The repartition record: the same value, keyed by the new key.
	if rej := dec.Decode(rep, []byte(pair), val, now, &ev); rej != nil || ev.Key != pair {
		t.Errorf("repartition decode: %v, key %q", rej, ev.Key)
	}
	if f := &rep.Features[0]; !f.Counts(&ev) || f.Value(&ev) != 0.5 {
		t.Errorf("re-keyed feature: counts %v value %v, want true 0.5", f.Counts(&ev), f.Value(&ev))
	}
	if rej := dec.Decode(rep, []byte("u1"), val, now, &ev); rej == nil || rej.Reason != events.ReasonKeyMismatch {
		t.Errorf("repartition record keyed by the source key: %v, want key_mismatch", rej)
	}
	// Backfill's re-key plan reads the source topic (its key checked as the
	// source's) and keys events by the re-keyed entity.
	bp := events.RekeyPlan(cfg.Repartitions()[0])
	if rej := dec.Decode(bp, []byte("u1"), val, now, &ev); rej != nil || ev.Key != pair {
		t.Errorf("re-key plan decode: %v, key %q; want %s", rej, ev.Key, pair)
	}
	if rej := dec.Decode(bp, []byte(pair), val, now, &ev); rej == nil || rej.Reason != events.ReasonKeyMismatch {
		t.Errorf("re-key plan with a record keyed by the pair: %v, want key_mismatch (the source's key is checked)", rej)
	}
}
