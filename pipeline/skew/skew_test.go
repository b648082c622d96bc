package skew_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/skew"
)

// featureFile has one entity, one source and features over finite and
// lifetime windows, two versions of one of them.
var featureFile = testkit.KafkaSection(3) + testkit.UserTransactions + `features:
  - {name: txn_avg_30d, version: 1, entity: user, source: transactions, aggregation: avg, field: amount, window: 30d, owner: t, description: d}
  - {name: txn_sum_1d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: txn_count_7d, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, hop: 6h, owner: t, description: d}
  - {name: txn_count_7d, version: 2, entity: user, source: transactions, aggregation: count, window: 3d, hop: 1h, owner: t, description: d}
  - {name: txn_last, version: 1, entity: user, source: transactions, aggregation: last, field: amount, window: lifetime, owner: t, description: d}
`

// seen is a produced event with its arrival.
type seen struct {
	ev      aggregations.Event
	arrival int64
}

// world produces n transactions for keys users over 10 days before now; a
// quarter arrive late (up to 2 days after their event time). It returns the
// events by key.
func world(t *testing.T, cl *kgo.Client, cfg *config.File, rng *rand.Rand, n, users int, now int64) map[string][]seen {
	t.Helper()
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	var evs []seen
	var keys []string
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("user-%d", rng.IntN(users))
		ts := now - 1000 - rng.Int64N(10*aggregations.Day)
		arrival := ts + rng.Int64N(aggregations.Minute)
		if rng.IntN(4) == 0 {
			arrival = ts + rng.Int64N(2*aggregations.Day)
		}
		arrival = min(arrival, now-1)
		amount := float64(rng.IntN(100_000)) / 100
		r, err := enc.Record(testkit.Event("transactions", key, ts, amount))
		if err != nil {
			t.Fatal(err)
		}
		r.Timestamp = time.UnixMilli(arrival)
		recs = append(recs, r)
		evs = append(evs, seen{ev: aggregations.Event{TS: ts, Value: amount}, arrival: arrival})
		keys = append(keys, key)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out := map[string][]seen{}
	for i, r := range recs {
		evs[i].ev.Seq = r.Offset // set by ProduceSync
		out[keys[i]] = append(out[keys[i]], evs[i])
	}
	return out
}

// truth is the brute-force value of f for key as of at: arrival mode when
// arrived, event mode otherwise.
func truth(f *config.Feature, evs []seen, at int64, arrived bool) *float64 {
	var in []aggregations.Event
	for _, e := range evs {
		if !arrived || e.arrival <= at {
			in = append(in, e.ev)
		}
	}
	v, ok := aggtest.BruteForce(f.Aggregation, f.Window, in, at)
	if !ok {
		return nil
	}
	return &v
}

func logEntry(t *testing.T, e *lookuplog.Entry, topic string) *kgo.Record {
	t.Helper()
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: topic, Key: []byte(e.Key), Value: b, Timestamp: time.UnixMilli(e.At)}
}

// logEntries is the record of entries es, one per line, as the lookup
// service batches them (no key), stamped with the first one's time.
func logEntries(t *testing.T, topic string, es ...*lookuplog.Entry) *kgo.Record {
	t.Helper()
	var v []byte
	for i, e := range es {
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			v = append(v, '\n')
		}
		v = append(v, b...)
	}
	return &kgo.Record{Topic: topic, Value: v, Timestamp: time.UnixMilli(es[0].At)}
}

func same(a, b *float64) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// TestSkewReport checks the rules of the report against served values built
// by brute force from what had arrived by each lookup, with a few values
// tampered with.
func TestSkewReport(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, featureFile, testkit.SetupOptions{})
	brokers := k.Brokers
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 5))
	now := time.Now().Add(-time.Minute).UnixMilli()
	const users = 20
	byKey := world(t, cl, cfg, rng, 3000, users, now)

	feats := []*config.Feature{}
	for _, id := range []string{"txn_avg_30d@1", "txn_sum_1d@1", "txn_count_7d@1", "txn_count_7d@2", "txn_last@1"} {
		f, err := cfg.Feature(id)
		if err != nil {
			t.Fatal(err)
		}
		feats = append(feats, f)
	}
	// Lookups every few hours over the last 5 days, as served in arrival
	// terms. Tampered: one sum (+1.5), one avg turned null, one count off by
	// 1e-11 relative (within tolerance). The oldest lookups are before since.
	since := now - 4*aggregations.Day
	var recs []*kgo.Record
	var wantEventDiff, early int64
	sumDiffKey := ""
	type row struct {
		key string
		at  int64
	}
	var rows []row
	for at := now - 5*aggregations.Day; at < now; at += 3*aggregations.Hour + 17 {
		for u := 0; u < users; u += 3 {
			rows = append(rows, row{fmt.Sprintf("user-%d", u), at})
		}
	}
	var batch []*lookuplog.Entry // the entries of one time: one record, as a replica batches them
	for i, r := range rows {
		if len(batch) > 0 && batch[0].At != r.at {
			recs = append(recs, logEntries(t, cfg.Kafka.LookupLogTopic, batch...))
			batch = nil
		}
		e := &lookuplog.Entry{Entity: "user", Key: r.key, At: r.at, Features: map[string]*float64{}}
		for _, f := range feats {
			served := truth(f, byKey[r.key], r.at, true)
			if r.at >= since && !same(served, truth(f, byKey[r.key], r.at, false)) {
				wantEventDiff++
			}
			e.Features[f.ID] = served
		}
		if r.at < since {
			early++
		}
		switch i {
		case len(rows) - 40:
			v := *e.Features["txn_sum_1d@1"] + 1.5
			e.Features["txn_sum_1d@1"] = &v
			sumDiffKey = r.key
		case len(rows) - 30:
			if e.Features["txn_avg_30d@1"] == nil {
				t.Fatal("test data: expected a non-null avg to tamper with")
			}
			e.Features["txn_avg_30d@1"] = nil
		case len(rows) - 20:
			v := *e.Features["txn_count_7d@2"] * (1 + 1e-11)
			e.Features["txn_count_7d@2"] = &v
			e.Features["gone@1"] = &v // a feature the file no longer defines
		}
		if i == len(rows)-40 { // as a replica before 2026-12-02 wrote it: one entry, keyed
			recs = append(recs, logEntry(t, e, cfg.Kafka.LookupLogTopic))
			continue
		}
		batch = append(batch, e)
	}
	recs = append(recs, logEntries(t, cfg.Kafka.LookupLogTopic, batch...))
	recs = append(recs, &kgo.Record{Topic: cfg.Kafka.LookupLogTopic, Key: []byte("x"), Value: []byte("{not json"), Timestamp: time.UnixMilli(now)})
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if wantEventDiff == 0 {
		t.Fatal("test data: no late event changes a served value; event mode would test nothing")
	}

	t.Logf("%d lookups, %d served values changed by late events", len(rows), wantEventDiff)
	run := func(mode backfill.Mode, examples int) *skew.Report {
		t.Helper()
		rep, err := skew.Run(ctx, skew.Options{Brokers: brokers, Config: cfg, Since: time.UnixMilli(since), Mode: mode, Examples: examples})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	t.Run("arrival mode reproduces served values except the tampered ones", func(t *testing.T) {
		rep := run(backfill.ModeArrival, 10)
		if want := int64(len(rows)) - early; rep.Entries != want {
			t.Fatalf("entries %d, want %d (since skips %d of %d)", rep.Entries, want, early, len(rows))
		}
		if rep.Invalid != 1 || rep.Unknown["gone@1"] != 1 {
			t.Fatalf("invalid %d, unknown %v; want 1 undecodable record and 1 value of gone@1", rep.Invalid, rep.Unknown)
		}
		if rep.Mismatches != 2 || rep.Compared != rep.Entries*int64(len(feats)) {
			t.Fatalf("%d mismatches of %d compared, want 2 of %d:\n%s", rep.Mismatches, rep.Compared, rep.Entries*int64(len(feats)), text(rep))
		}
		sum := rep.Feature("txn_sum_1d@1")
		if sum.Mismatches != 1 || math.Abs(sum.MaxAbsDiff-1.5) > 1e-9 || len(sum.Examples) != 1 || sum.Examples[0].Key != sumDiffKey {
			t.Fatalf("sum: %+v", sum)
		}
		if ex := sum.Examples[0]; ex.Served == nil || ex.Recomputed == nil || math.Abs(*ex.Served-*ex.Recomputed-1.5) > 1e-9 {
			t.Fatalf("sum example %+v: served must be recomputed + 1.5", ex)
		}
		avg := rep.Feature("txn_avg_30d@1")
		if avg.Mismatches != 1 || avg.NullMismatches != 1 || avg.Examples[0].Served != nil || avg.Examples[0].Recomputed == nil {
			t.Fatalf("null vs value is a mismatch: %+v", avg)
		}
		c2 := rep.Feature("txn_count_7d@2")
		if c2.Mismatches != 0 || c2.MaxRelDiff == 0 || c2.MaxRelDiff > 2e-11 {
			t.Fatalf("a difference within tolerance is no mismatch but is reported: %+v", c2)
		}
		if !errors.Is(rep.Err(), skew.ErrMismatch) {
			t.Fatalf("Err() = %v, want ErrMismatch", rep.Err())
		}
	})

	t.Run("event mode also counts every value changed by a late event", func(t *testing.T) {
		rep := run(backfill.ModeEvent, 1)
		// The two tampered values differ in event mode too, unless the late
		// event happened to change exactly those.
		if rep.Mismatches < wantEventDiff || rep.Mismatches > wantEventDiff+2 {
			t.Fatalf("%d mismatches, want %d (late events) + up to 2 tampered:\n%s", rep.Mismatches, wantEventDiff, text(rep))
		}
		for _, f := range rep.Features {
			if len(f.Examples) > 1 {
				t.Fatalf("%s: %d examples, want at most 1", f.Feature, len(f.Examples))
			}
		}
	})

	t.Run("the tolerance decides whether a tiny difference is a mismatch", func(t *testing.T) {
		rep, err := skew.Run(ctx, skew.Options{Brokers: brokers, Config: cfg, Mode: backfill.ModeArrival,
			Since: time.UnixMilli(now - 10*aggregations.Day)})
		if err != nil {
			t.Fatal(err)
		}
		// Three rows are tampered with; the 1e-11 one is within the default
		// tolerance, so exactly the other two remain. The strict run uses
		// 1e-12, above float rounding of sums folded in another order
		// (~1e-15), below the tampering.
		if rep.Mismatches != 2 {
			t.Fatalf("%d mismatches, want 2", rep.Mismatches)
		}
		strict, err := skew.Run(ctx, skew.Options{Brokers: brokers, Config: cfg, Mode: backfill.ModeArrival, Tolerance: 1e-12})
		if err != nil {
			t.Fatal(err)
		}
		if strict.Mismatches != 3 {
			t.Fatalf("tolerance 1e-12: %d mismatches, want 3", strict.Mismatches)
		}
	})
}

func text(r *skew.Report) string {
	var b strings.Builder
	r.WriteText(&b)
	return b.String()
}

func TestOptionsAreValidated(t *testing.T) {
	for name, o := range map[string]skew.Options{
		"no brokers":         {Config: &config.File{}},
		"no config":          {Brokers: []string{"x:1"}},
		"unknown mode":       {Brokers: []string{"x:1"}, Config: &config.File{}, Mode: "later"},
		"negative tolerance": {Brokers: []string{"x:1"}, Config: &config.File{}, Tolerance: -1},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := skew.Run(context.Background(), o); !errors.Is(err, skew.ErrInvalidOptions) {
				t.Fatalf("err = %v, want ErrInvalidOptions", err)
			}
		})
	}
}
