package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/skew"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// bucketFile has bucketed features of three kinds and windows, one with
// max_buckets folding into __other__, and a bucketed last of a string
// field (merchant_id by currency, also folding).
var bucketFile = testkit.KafkaSection(4) + testkit.UserTransactions + `features:
  - {name: amount_by_currency_7d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, bucket: currency, max_buckets: 2, window: 7d, hop: 6h, owner: t, description: d}
  - {name: count_by_currency, version: 1, entity: user, source: transactions, aggregation: count, bucket: currency, window: lifetime, owner: t, description: d}
  - {name: avg_by_merchant_1d, version: 1, entity: user, source: transactions, aggregation: avg, field: amount, bucket: merchant_id, window: 1d, owner: t, description: d}
  - {name: last_merchant_by_currency, version: 1, entity: user, source: transactions, aggregation: last, field: merchant_id, bucket: currency, max_buckets: 2, window: 7d, owner: t, description: d}
`

// bucketTxn is a transaction with its bucket fields.
type bucketTxn struct {
	key, currency, merchant string
	ts                      int64
	amount                  float64
}

// produceBucketTxns produces txns and records each in p under both of its
// buckets' keys: events[source][key] keeps one aggregations.Event per
// record, with Bucket "currency|merchant" (split by wantBucketMap) and
// Str the merchant.
func produceBucketTxns(t *testing.T, ctx context.Context, cl *kgo.Client, cfg *config.File, txns []bucketTxn, p *produced) {
	t.Helper()
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]*kgo.Record, 0, len(txns))
	for _, x := range txns {
		r, err := enc.Record(map[string]any{"user_id": x.key, "ts": x.ts, "merchant_id": x.merchant, "amount": x.amount, "currency": x.currency})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range recs {
		x := txns[i]
		p.addLocked(cfg, "transactions", x.key, aggregations.Event{TS: x.ts, Seq: aggregations.Seq(r.Partition, r.Offset), Value: x.amount, Str: x.merchant, Bucket: x.currency + "|" + x.merchant})
	}
}

// wantBucketMap is the brute force of bucketed feature f over evs as of T
// (evs' Bucket is "currency|merchant"): the map (nil: null) and the
// status, with the lookup's NOT_FOUND rule (known: an event before T).
func wantBucketMap(f *config.Feature, evs []aggregations.Event, T int64, known bool) (map[string]float64, string) {
	if !known {
		return nil, lookup.StatusNotFound
	}
	split := make([]aggregations.Event, len(evs))
	for i, e := range evs {
		cur, merchant, _ := strings.Cut(e.Bucket, "|")
		e.Bucket = cur
		if f.Bucket == "merchant_id" {
			e.Bucket = merchant
		}
		split[i] = e
	}
	groups := aggtest.BucketGroups(f.Window, split, T, f.MaxBuckets)
	status := lookup.StatusPresent
	if len(groups) == 0 {
		status = lookup.StatusEmptyWindow
		if !f.Aggregation.EmptyIsZero() {
			return nil, status
		}
	}
	m := map[string]float64{}
	for k, g := range groups {
		m[k], _ = aggtest.BruteForce(f.Aggregation, f.Window, g, T)
	}
	return m, status
}

func sameMap(a, b map[string]float64) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for k, x := range a {
		if y, ok := b[k]; !ok || !aggtest.Close(x, y) {
			return false
		}
	}
	return true
}

// TestBucketedFeaturesThroughWorkerLookupAndBackfill runs bucketed
// features (sum, count, avg; finite and lifetime windows; max_buckets 2
// folding into __other__) through a real worker and the lookup service and
// checks every answer against the brute force (aggtest.BucketGroups, then
// BruteForce per bucket), then checks that backfill (Compute) answers the
// same maps as of the same T, and the brute force at other times: an
// empty window ({} for count and sum, null for avg) and an unknown key
// (null, NOT_FOUND) included.
func TestBucketedFeaturesThroughWorkerLookupAndBackfill(t *testing.T) {
	k, cfg, cl := setup(t, bucketFile)
	ctx := context.Background()
	p := newProduced()
	now := time.Now()
	ms := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	var txns []bucketTxn
	curs := []string{"EUR", "USD", "EUR", "GBP", "EUR", "USD", "CHF"}
	for i := range 21 {
		txns = append(txns, bucketTxn{"many", curs[i%len(curs)], fmt.Sprintf("m%d", i%4), ms(time.Duration(i*7%21) * 5 * time.Hour), float64(i) + 0.25})
	}
	txns = append(txns,
		bucketTxn{"many", "JPY", "m9", ms(2 * time.Hour), 100}, bucketTxn{"many", "JPY", "m9", ms(2 * time.Hour), 101}, // a tie on event time
		bucketTxn{"few", "EUR", "m1", ms(3 * time.Hour), 7},
		bucketTxn{"old", "USD", "m2", ms(20 * 24 * time.Hour), 9})
	produceBucketTxns(t, ctx, cl, cfg, txns, p)
	dir := t.TempDir()
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	keys := []string{"many", "few", "old", "nobody"}
	names := []string{"amount_by_currency_7d", "count_by_currency", "avg_by_merchant_1d"}
	served := func(fv lookup.FeatureValue) map[string]float64 {
		if fv.Buckets == nil {
			return nil
		}
		m := map[string]float64{}
		for k, b := range fv.Buckets {
			if b.Value != nil {
				m[k] = *b.Value
			}
		}
		return m
	}
	calls := 0 // answered lookups, each logging every key
	check := func() (bad []string, resp lookup.LookupResponse) {
		if code := postJSON(t, ls.url+"/v1/lookup", map[string]any{"entity": "user", "keys": keys, "features": names}, &resp); code != http.StatusOK {
			return []string{"HTTP " + http.StatusText(code)}, resp
		}
		calls++
		T := resp.AsOf.UnixMilli()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, r := range resp.Results {
			for _, name := range names {
				f, _ := cfg.Feature(name)
				want, status := wantBucketMap(f, p.events["transactions"][r.Key], T, p.knownLocked("user", r.Key, T))
				got := r.Features[name]
				if got.Status != status || !sameMap(served(got), want) {
					bad = append(bad, fmt.Sprintf("%s %s: %s %v, want %s %v", r.Key, name, got.Status, served(got), status, want))
				}
			}
		}
		return bad, resp
	}
	var bad []string
	var resp lookup.LookupResponse
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if bad, resp = check(); len(bad) == 0 && ls.ready() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookups differ from the brute force after 90s: %v", bad)
		}
	}
	// The example the issue gives: a map from bucket to value, folded.
	for _, r := range resp.Results {
		if r.Key != "many" {
			continue
		}
		m := served(r.Features["amount_by_currency_7d"])
		if _, ok := m[aggregations.OtherBucket]; !ok || len(m) != 3 {
			t.Errorf("many amount_by_currency_7d = %v: want 2 buckets and %s", m, aggregations.OtherBucket)
		}
	}

	T := resp.AsOf.UnixMilli()

	// Skew replays the lookup log (the maps served as of T, in "buckets")
	// through backfill: no mismatch; a tampered served map (one bucket's
	// value off by 1) is one mismatch, with both maps as the example.
	waitLogged(t, cl, cfg.Kafka.LookupLogTopic, int64(calls*len(keys)), 60*time.Second)
	var tampered *lookuplog.Entry
	for _, r := range resp.Results {
		if r.Key != "many" {
			continue
		}
		e := &lookuplog.Entry{Entity: "user", Key: "many", At: T, Features: map[string]*float64{}, Buckets: map[string]map[string]*float64{}}
		for _, name := range names {
			f, _ := cfg.Feature(name)
			m := map[string]*float64{}
			for k, b := range r.Features[name].Buckets {
				v := *b.Value
				if name == "count_by_currency" && k == "EUR" {
					v++
				}
				m[k] = &v
			}
			e.Buckets[f.ID] = m
		}
		tampered = e
	}
	val, err := tampered.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Kafka.LookupLogTopic, Key: []byte("many"), Value: val}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rep, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Mode: backfill.ModeArrival, Examples: 3,
		Keep: func(e *lookuplog.Entry) bool { return e.At == T }})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	rep.WriteText(&text)
	t.Logf("skew:\n%s", text.String())
	for _, name := range names {
		f, _ := cfg.Feature(name)
		fr := rep.Feature(f.ID)
		wantMis := int64(0)
		if name == "count_by_currency" {
			wantMis = 1
		}
		if fr == nil || !fr.Buckets || fr.Rows != int64(len(keys)+1) || fr.Mismatches != wantMis {
			t.Errorf("skew of %s: %+v, want %d rows (the keys and the tampered entry), %d mismatches", name, fr, len(keys)+1, wantMis)
			continue
		}
		if wantMis == 1 && (len(fr.Examples) != 1 || fr.Examples[0].ServedBuckets == nil || *fr.Examples[0].ServedBuckets["EUR"] != *fr.Examples[0].RecomputedBuckets["EUR"]+1) {
			t.Errorf("skew example of %s: %+v", name, fr.Examples)
		}
	}

	// Backfill answers the same maps as of the lookup's T, and the brute
	// force at other times.
	var points []backfill.Point
	for _, key := range keys {
		for _, t := range []int64{T, ms(48 * time.Hour), ms(30 * time.Hour), ms(2*time.Hour) + 1, now.Add(time.Minute).UnixMilli()} {
			points = append(points, backfill.Point{Key: key, T: t})
		}
	}
	v, err := backfill.Compute(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Features: names}, points)
	if err != nil {
		t.Fatal(err)
	}
	reached := map[string]bool{}
	p.mu.Lock()
	defer p.mu.Unlock()
	for row, pt := range points {
		for col, name := range names {
			f, _ := cfg.Feature(name)
			cells, ok := v.Buckets(row, col)
			var got map[string]float64
			if ok {
				got = map[string]float64{}
				for _, c := range cells {
					got[c.Key] = c.Value
				}
			}
			want, status := wantBucketMap(f, p.events["transactions"][pt.Key], pt.T, p.knownLocked("user", pt.Key, pt.T))
			if st := v.Status(row, col); st != status || !sameMap(got, want) {
				t.Errorf("backfill %s at T%+d: %s = %v (%s), want %v (%s)", pt.Key, pt.T-T, name, got, st, want, status)
			}
			reached[status] = true
			if pt.T == T {
				for _, r := range resp.Results {
					if r.Key == pt.Key && !sameMap(served(r.Features[name]), got) {
						t.Errorf("%s %s: lookup %v, backfill %v at the same T", pt.Key, name, served(r.Features[name]), got)
					}
				}
			}
		}
	}
	for _, s := range []string{lookup.StatusPresent, lookup.StatusEmptyWindow, lookup.StatusNotFound} {
		if !reached[s] {
			t.Errorf("the test did not reach %s (%v)", s, slices.Sorted(maps.Keys(reached)))
		}
	}
}

// TestBucketedBackfillFromSnapshot: bucketed tiles go through a worker's
// snapshot (pending, future-stamped events included) and seed a backfill
// whose source records before the snapshot are deleted (retention): the
// maps still equal the brute force over every event ever produced, and
// the same backfill without the snapshot is wrong, which shows the
// snapshot's bucketed tiles were read.
func TestBucketedBackfillFromSnapshot(t *testing.T) {
	store, _ := newSnapshotStore(t, t.TempDir())
	k, cfg, cl := setup(t, bucketFile)
	ctx := context.Background()
	dir := t.TempDir()
	p := newProduced()
	now := time.Now()
	curs := []string{"EUR", "USD", "EUR", "GBP", "EUR", "USD", "CHF", "JPY"}
	gen := func(n int, seed uint64, future int) []bucketTxn {
		rng := rand.New(rand.NewPCG(seed, 1))
		out := make([]bucketTxn, n)
		for i := range out {
			ts := time.Now().Add(-time.Duration(rng.Int64N(int64(10*24*time.Hour))) - time.Second).UnixMilli()
			if i < future { // stamped up to 10 minutes ahead: pending in the worker's tiles
				ts = now.Add(time.Duration(1+rng.IntN(600)) * time.Second).UnixMilli()
			}
			out[i] = bucketTxn{fmt.Sprintf("u%d", rng.IntN(8)), curs[rng.IntN(len(curs))], fmt.Sprintf("m%d", rng.IntN(5)), ts, float64(rng.IntN(10000)) / 4}
		}
		return out
	}
	produceBucketTxns(t, ctx, cl, cfg, gen(800, 1, 40), p)
	w := snapshottingWorker(t, k.Brokers, cfg, filepath.Join(dir, "worker"), store)
	snap := snapshotOfAll(t, ctx, w, cl, cfg)
	maxTS := int64(0)
	del := kadm.Offsets{}
	for _, sp := range snap.Sources {
		maxTS = max(maxTS, sp.MaxEventTime)
		del.AddOffset(sp.Topic, sp.Partition, sp.NextOffset, -1)
	}
	resp, err := kadm.NewClient(cl).DeleteRecords(ctx, del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}
	produceBucketTxns(t, ctx, cl, cfg, gen(400, 2, 0), p)

	tMin := max(maxTS, snap.CreatedAt.UnixMilli()) + 1
	var points []backfill.Point
	for i := range 8 {
		for _, d := range []int64{0, aggregations.Minute, aggregations.Hour} {
			points = append(points, backfill.Point{Key: fmt.Sprintf("u%d", i), T: tMin + d})
		}
	}
	names := []string{"amount_by_currency_7d", "count_by_currency", "avg_by_merchant_1d"}
	wrong := func(snaps *snapshot.Store) int {
		v, err := backfill.Compute(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Features: names, Snapshots: snaps}, points)
		if err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		n := 0
		for row, pt := range points {
			for col, name := range names {
				f, _ := cfg.Feature(name)
				cells, ok := v.Buckets(row, col)
				var got map[string]float64
				if ok {
					got = map[string]float64{}
					for _, c := range cells {
						got[c.Key] = c.Value
					}
				}
				want, _ := wantBucketMap(f, p.events["transactions"][pt.Key], pt.T, p.knownLocked("user", pt.Key, pt.T))
				if !sameMap(got, want) {
					n++
					if snaps != nil && n <= 5 {
						t.Errorf("backfill from the snapshot %s at %d: %s = %v, want %v", pt.Key, pt.T, name, got, want)
					}
				}
			}
		}
		return n
	}
	if n := wrong(store); n != 0 {
		t.Errorf("from the snapshot: %d wrong maps of %d", n, len(points)*len(names))
	}
	if n := wrong(nil); n == 0 {
		t.Error("without the snapshot every map is right: the snapshot was not needed, the test shows nothing")
	}
}
