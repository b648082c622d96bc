package feastflight_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/feastflight"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

// TestFlightListFeatures: a historical retrieval of first_k and last_k
// features answers Arrow list<double> columns equal at every entity row to
// aggtest.BruteForceList over the produced events (last_k newest first),
// null for an empty window and an unknown key, next to a float64 column.
func TestFlightListFeatures(t *testing.T) {
	k, cfg, pc := testkit.Setup(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: transactions-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: s, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: recent, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, window: 7d, owner: t, description: d}
  - {name: earliest, version: 1, entity: user, source: transactions, aggregation: first_k, k: 4, field: amount, window: lifetime, owner: t, description: d}
`, testkit.SetupOptions{})
	ctx := context.Background()
	h := aggregations.Hour
	now := time.Now().UnixMilli()
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	events := map[string][]aggregations.Event{}
	add := func(key string, ts int64, amount float64) {
		r, err := enc.Record(testkit.Event("transactions", key, ts, amount))
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		events[key] = append(events[key], aggregations.Event{TS: ts, Seq: r.Offset, Value: amount})
	}
	for i := range 10 {
		add("many", now-int64(i*7%10)*10*h, float64(i)+0.5) // out of event-time order
	}
	add("many", now-5*h, 100) // a tie on event time: offset order
	add("many", now-5*h, 101)
	add("old", now-30*aggregations.Day, 9)

	cl := serveFlight(t, feastflight.Options{Brokers: k.Brokers, Config: cfg})

	// The entity dataframe.
	var keys []string
	var times []int64
	for _, key := range []string{"many", "old", "nobody"} {
		for _, T := range []int64{now - 80*h, now - 5*h, now - 5*h + 1, now + 1} {
			keys, times = append(keys, key), append(times, T)
		}
	}
	batches := retrieve(t, cl, []string{"transactions:s", "transactions:recent", "transactions:earliest"}, keys, times)
	got := map[string][][]float64{}
	var sums []*float64
	for _, b := range batches {
		for c, f := range b.Schema().Fields() {
			switch f.Name {
			case "recent", "earliest":
				if !arrow.TypeEqual(f.Type, arrow.ListOf(arrow.PrimitiveTypes.Float64)) {
					t.Fatalf("column %s is %s, want list<double>", f.Name, f.Type)
				}
				l := b.Column(c).(*array.List)
				vals := l.ListValues().(*array.Float64)
				for i := 0; i < l.Len(); i++ {
					if l.IsNull(i) {
						got[f.Name] = append(got[f.Name], nil)
						continue
					}
					lo, hi := l.ValueOffsets(i)
					got[f.Name] = append(got[f.Name], slices.Clone(vals.Float64Values()[lo:hi]))
				}
			case "s":
				a := b.Column(c).(*array.Float64)
				for i := 0; i < a.Len(); i++ {
					if a.IsNull(i) {
						sums = append(sums, nil)
					} else {
						v := a.Value(i)
						sums = append(sums, &v)
					}
				}
			}
		}
	}
	if len(sums) != len(keys) {
		t.Fatalf("%d rows of s, want %d", len(sums), len(keys))
	}
	full := 0
	for _, name := range []string{"recent", "earliest"} {
		f, err := cfg.Feature(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(got[name]) != len(keys) {
			t.Fatalf("%d rows of %s, want %d", len(got[name]), name, len(keys))
		}
		for i, key := range keys {
			want, ok := aggtest.BruteForceList(f.Aggregation, f.Window, events[key], times[i])
			if !ok {
				want = nil
			}
			if !slices.Equal(got[name][i], want) || (got[name][i] == nil) != (want == nil) {
				t.Errorf("row %d (%s, T=%d) %s = %v, want %v", i, key, times[i], name, got[name][i], want)
			}
			if len(want) == f.K {
				full++
			}
		}
	}
	if full == 0 {
		t.Error("no row reached k values")
	}
	sf, err := cfg.Feature("s")
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range keys {
		want, ok := aggtest.BruteForce(sf.Aggregation, sf.Window, events[key], times[i])
		if key == "nobody" {
			ok = false
		}
		if (sums[i] == nil) == ok || (ok && !aggtest.Close(*sums[i], want)) {
			t.Errorf("row %d (%s) s = %v, want %v (%v)", i, key, fmtV(sums[i]), want, ok)
		}
	}
}
