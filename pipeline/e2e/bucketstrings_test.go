package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/skew"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// wantBucketStrings is the brute force of bucketed string feature f (a
// last or first of merchant_id by currency) over evs as of T: the map
// (nil: null), with the lookup's NOT_FOUND rule (known: an event before
// T).
func wantBucketStrings(f *config.Feature, evs []aggregations.Event, T int64, known bool) map[string]string {
	if !known {
		return nil
	}
	split := make([]aggregations.Event, len(evs))
	for i, e := range evs {
		e.Bucket, _, _ = strings.Cut(e.Bucket, "|")
		split[i] = e
	}
	groups := aggtest.BucketGroups(f.Window, split, T, f.MaxBuckets)
	if len(groups) == 0 {
		return nil
	}
	m := map[string]string{}
	for k, g := range groups {
		m[k], _ = aggtest.BruteForceString(f.Aggregation, f.Window, g, T)
	}
	return m
}

// TestBucketedStringFeatureThroughLookupLogAndSkew: a bucketed last of a
// string field (max_buckets 2, folding into __other__) is served as the
// brute force's map through a real worker and the lookup service, logged
// in the lookup log's "bucket_strings" as served, and `skew` replays the
// log with 0 mismatches; a tampered served map (one bucket's string
// changed) is exactly one mismatch, with both maps as its example.
func TestBucketedStringFeatureThroughLookupLogAndSkew(t *testing.T) {
	k, cfg, cl := setup(t, bucketFile)
	ctx := context.Background()
	p := newProduced()
	now := time.Now()
	ms := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	var txns []bucketTxn
	curs := []string{"EUR", "USD", "EUR", "GBP", "EUR", "USD", "CHF"}
	for i := range 21 {
		txns = append(txns, bucketTxn{"many", curs[i%len(curs)], fmt.Sprintf("m%d", i%4), ms(time.Duration(i*7%21) * 5 * time.Hour), float64(i)})
	}
	txns = append(txns,
		bucketTxn{"many", "JPY", "m9", ms(2 * time.Hour), 100}, bucketTxn{"many", "JPY", "m8", ms(2 * time.Hour), 101}, // a tie on event time
		bucketTxn{"few", "EUR", "café ☕", ms(3 * time.Hour), 7},
		bucketTxn{"old", "USD", "m2", ms(20 * 24 * time.Hour), 9})
	produceBucketTxns(t, ctx, cl, cfg, txns, p)
	dir := t.TempDir()
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	keys := []string{"many", "few", "old", "nobody"}
	const name = "last_merchant_by_currency"
	f, err := cfg.Feature(name)
	if err != nil {
		t.Fatal(err)
	}
	served := func(fv lookup.FeatureValue) (map[string]string, error) {
		if fv.Buckets == nil {
			return nil, nil
		}
		m := map[string]string{}
		for k, b := range fv.Buckets {
			if b.Str == nil {
				return nil, fmt.Errorf("bucket %s: %+v, want a string", k, b)
			}
			m[k] = *b.Str
		}
		return m, nil
	}
	calls := 0 // answered lookups, each logging every key
	check := func() (bad []string, resp lookup.LookupResponse) {
		if code := postJSON(t, ls.url+"/v1/lookup", map[string]any{"entity": "user", "keys": keys, "features": []string{name}}, &resp); code != http.StatusOK {
			return []string{"HTTP " + http.StatusText(code)}, resp
		}
		calls++
		T := resp.AsOf.UnixMilli()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, r := range resp.Results {
			want := wantBucketStrings(f, p.events["transactions"][r.Key], T, p.knownLocked("user", r.Key, T))
			got, err := served(r.Features[name])
			if err != nil || (got == nil) != (want == nil) || !maps.Equal(got, want) {
				bad = append(bad, fmt.Sprintf("%s: %v (%v), want %v", r.Key, got, err, want))
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
	T := resp.AsOf.UnixMilli()
	var many map[string]string
	for _, r := range resp.Results {
		if r.Key == "many" {
			many, _ = served(r.Features[name])
		}
	}
	if _, ok := many[aggregations.OtherBucket]; !ok || len(many) != 3 {
		t.Fatalf("many %s = %v: want 2 buckets and %s", name, many, aggregations.OtherBucket)
	}

	// The log carries every served map in "bucket_strings"; skew replays
	// the entries as of T (the keys, and a tampered copy of many's).
	waitLogged(t, cl, cfg.Kafka.LookupLogTopic, int64(calls*len(keys)), 60*time.Second)
	m := map[string]*string{}
	for b, s := range many {
		if b == aggregations.OtherBucket {
			s += "!"
		}
		m[b] = &s
	}
	tampered := &lookuplog.Entry{Entity: "user", Key: "many", At: T, Features: map[string]*float64{},
		BucketStrings: map[string]map[string]*string{f.ID: m}}
	val, err := tampered.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Kafka.LookupLogTopic, Key: []byte("many"), Value: val}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var logged int
	rep, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Mode: backfill.ModeArrival, Examples: 3,
		Keep: func(e *lookuplog.Entry) bool {
			if e.At != T {
				return false
			}
			if _, ok := e.BucketStrings[f.ID]; ok {
				logged++
			}
			return true
		}})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	rep.WriteText(&text)
	t.Logf("skew:\n%s", text.String())
	if logged != len(keys)+1 {
		t.Errorf("%d entries as of T carry %s in bucket_strings, want %d (the keys and the tampered entry)", logged, f.ID, len(keys)+1)
	}
	fr := rep.Feature(f.ID)
	if fr == nil || !fr.Buckets || !fr.String || fr.Rows != int64(len(keys)+1) || fr.Mismatches != 1 || fr.NullMismatches != 0 || len(fr.Examples) != 1 {
		t.Fatalf("skew of %s: %+v, want %d rows (the keys and the tampered entry), 1 mismatch", name, fr, len(keys)+1)
	}
	ex := fr.Examples[0]
	s, r := ex.ServedBucketStrings[aggregations.OtherBucket], ex.RecomputedBucketStrings[aggregations.OtherBucket]
	if ex.Key != "many" || s == nil || r == nil || *s != *r+"!" || *r != many[aggregations.OtherBucket] {
		t.Errorf("skew example: %+v, want many's %s served with \"!\" appended", ex, aggregations.OtherBucket)
	}
}
