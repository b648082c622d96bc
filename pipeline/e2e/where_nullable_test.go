package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

// paymentSchema has a nullable field, discount (an Avro union with null).
const paymentSchema = `{"type": "record", "name": "Payment", "namespace": "featurepipe.test", "fields": [
  {"name": "user_id", "type": "string"},
  {"name": "amount", "type": "double"},
  {"name": "discount", "type": ["null", "double"], "default": null},
  {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}
]}`

// nullableFile filters on the nullable discount with CEL's null semantics;
// nullablePredicates are its wheres in Go.
var nullableFile = testkit.KafkaSection(3) + `entities:
  - {name: user, key: user_id}
sources:
  - {name: payments, topic: payments-{{ID}}, schema: payment.avsc, event_time: ts}
features:
  - {name: big_discount_count_7d, version: 1, entity: user, source: payments, aggregation: count, window: 7d, owner: t, description: d, where: "discount != null && discount > 0.5"}
  - {name: full_price_sum_7d, version: 1, entity: user, source: payments, aggregation: sum, field: amount, window: 7d, owner: t, description: d, where: "discount == null"}
  - {name: payment_count_7d, version: 1, entity: user, source: payments, aggregation: count, window: 7d, owner: t, description: d}
`

type payment struct {
	key      string
	ts, seq  int64
	amount   float64
	discount *float64
}

var nullablePredicates = map[string]func(payment) bool{
	"big_discount_count_7d@1": func(p payment) bool { return p.discount != nil && *p.discount > 0.5 },
	"full_price_sum_7d@1":     func(p payment) bool { return p.discount == nil },
}

// TestNullableFieldInWhere streams payments whose nullable discount is null
// for a third of them through a worker and checks the features filtering on
// it (discount != null && discount > 0.5; discount == null) against the Go
// brute force, online and in backfill. An unguarded where (discount > 0.5)
// fails on a null discount: produce refuses such a record with
// filter_error, as a worker would dead-letter it.
func TestNullableFieldInWhere(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, nullableFile, testkit.SetupOptions{Files: map[string]string{"payment.avsc": paymentSchema}})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "payments")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 8))
	now := time.Now()
	const users = 20
	var pays []payment
	for range 600 {
		p := payment{key: fmt.Sprintf("user-%03d", rng.IntN(users)), ts: now.Add(-time.Duration(rng.Int64N(int64(10*24*time.Hour))) - time.Second).UnixMilli(),
			amount: float64(rng.IntN(10000)) / 100}
		line := fmt.Sprintf(`{"user_id": %q, "amount": %v, "discount": null, "ts": %d}`, p.key, p.amount, p.ts)
		if rng.IntN(3) > 0 {
			d := float64(rng.IntN(100)) / 100
			p.discount = &d
			line = fmt.Sprintf(`{"user_id": %q, "amount": %v, "discount": %v, "ts": %d}`, p.key, p.amount, d, p.ts)
		}
		r, err := enc.FromJSON([]byte(line))
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		p.seq = aggregations.Seq(r.Partition, r.Offset)
		pays = append(pays, p)
	}
	byKey := map[string][]payment{}
	for _, p := range pays {
		byKey[p.key] = append(byKey[p.key], p)
	}
	want := func(f *config.Feature, key string, T int64) (float64, bool) {
		var in []aggregations.Event
		for _, p := range byKey[key] {
			if keep := nullablePredicates[f.ID]; keep == nil || keep(p) {
				in = append(in, aggregations.Event{TS: p.ts, Seq: p.seq, Value: p.amount})
			}
		}
		return aggtest.BruteForce(f.Aggregation, f.Window, in, T)
	}
	dir := t.TempDir()
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	keys := allKeys(users)
	compare := func() []string {
		resp, bad := lookupAll(t, ls, cfg, keys, byID)
		if bad != nil {
			return []string{bad[0].String()}
		}
		var out []string
		for _, r := range resp.Results {
			for _, f := range cfg.Features {
				w, ok := want(f, r.Key, resp.AsOf.UnixMilli())
				if got := r.Features[f.ID]; got.Status == lookup.StatusWarmingUp || (got.Value != nil) != ok || ok && !aggtest.Close(*got.Value, w) {
					out = append(out, fmt.Sprintf("%s %s: %s %v, want %v", r.Key, f.ID, got.Status, fmtPtr(got.Value), w))
				}
			}
		}
		return out
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		bad := compare()
		if len(bad) == 0 && ls.ready() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookups differ from the brute force, e.g. %v", bad[:min(len(bad), 5)])
		}
	}
	var points []backfill.Point
	for _, key := range keys {
		for _, ago := range []time.Duration{0, 26 * time.Hour, 5 * 24 * time.Hour} {
			points = append(points, backfill.Point{Key: key, T: now.Add(-ago).UnixMilli()})
		}
	}
	ids := []string{"big_discount_count_7d@1", "full_price_sum_7d@1", "payment_count_7d@1"}
	vals, err := backfill.Compute(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Features: ids}, points)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r, pt := range points {
		for c, f := range vals.Features {
			got, ok := vals.Get(r, c)
			w, wok := want(f, pt.Key, pt.T)
			n++
			if ok != wok || ok && !aggtest.Close(got, w) {
				t.Errorf("backfill %s %s as of %d: %v %v, want %v %v", pt.Key, f.ID, pt.T, got, ok, w, wok)
			}
		}
	}
	if vals.Events.Rejected[events.ReasonFilterError] != 0 {
		t.Errorf("backfill rejected %v; a guarded where never fails", vals.Events.Rejected)
	}
	t.Logf("%d backfill values equal the brute force", n)

	// Unguarded: null reaches >, the record is refused with filter_error.
	unguarded := testkit.WriteConfig(t, strings.Replace(nullableFile, `"discount != null && discount > 0.5"`, `"discount > 0.5"`, 1), map[string]string{"payment.avsc": paymentSchema})
	uenc, err := produce.NewEncoder(unguarded, "payments")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uenc.FromJSON([]byte(fmt.Sprintf(`{"user_id": "u", "amount": 1.0, "discount": null, "ts": %d}`, now.UnixMilli()))); err == nil || !strings.Contains(err.Error(), events.ReasonFilterError) {
		t.Errorf("unguarded where on a null discount: %v, want %s", err, events.ReasonFilterError)
	}
	if _, err := uenc.FromJSON([]byte(fmt.Sprintf(`{"user_id": "u", "amount": 1.0, "discount": 0.7, "ts": %d}`, now.UnixMilli()))); err != nil {
		t.Errorf("unguarded where on a discount: %v", err)
	}
}
