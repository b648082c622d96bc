package e2e

import (
	"context"
	"math"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/skew"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// derivedTwins are the derived features of the end-to-end feature files
// written in Go, by id: the brute force of their expressions, with the
// documented null rules (a null input gives null, a non-finite result such
// as a division by zero is null). in returns an input's brute-force value.
var derivedTwins = map[string]func(in func(id string) (float64, bool)) (float64, bool){
	"txn_sum_ratio@1": func(in func(string) (float64, bool)) (float64, bool) {
		s, sok := in("txn_sum_1d@1")
		a, aok := in("txn_avg_30d@1")
		if !sok || !aok {
			return 0, false
		}
		r := s / a
		return r, !math.IsNaN(r) && !math.IsInf(r, 0)
	},
}

// bruteForceLocked is the value and status of feature f for key as of T
// from the produced events (p.mu held), by the definitions:
//   - NOT_FOUND, null: no event of the key's entity with ts < T;
//   - a derived feature: PRESENT, its Go twin over its inputs' brute force;
//   - otherwise the aggregation over the window's events: EMPTY_WINDOW when
//     there are none, EXPIRED (with the empty window's value) when the
//     feature has a ttl and the newest event in the window is more than
//     ttl before T, else PRESENT.
func bruteForceLocked(p *produced, f *config.Feature, key string, T int64) (float64, bool, string) {
	if !p.knownLocked(f.Entity, key, T) {
		return 0, false, lookup.StatusNotFound
	}
	if f.IsDerived() {
		twin := derivedTwins[f.ID]
		if twin == nil {
			panic("e2e: no Go twin of derived feature " + f.ID)
		}
		v, ok := twin(func(id string) (float64, bool) {
			for _, in := range f.Derived.Inputs {
				if in.ID == id {
					v, ok, _ := bruteForceLocked(p, in, key, T)
					return v, ok
				}
			}
			panic("e2e: " + f.ID + " does not read " + id)
		})
		return v, ok, lookup.StatusPresent
	}
	evs := p.events[f.Source][key]
	want, ok := aggtest.BruteForce(f.Aggregation, f.Window, evs, T)
	if c, _ := aggtest.BruteForce(aggregations.Count, f.Window, evs, T); c == 0 {
		return want, ok, lookup.StatusEmptyWindow
	}
	if f.TTL > 0 {
		// The newest event time in the window: the max of the event times.
		times := make([]aggregations.Event, len(evs))
		for i, e := range evs {
			times[i] = aggregations.Event{TS: e.TS, Seq: e.Seq, Value: float64(e.TS)}
		}
		newest, _ := aggtest.BruteForce(aggregations.Max, f.Window, times, T)
		if T-int64(newest) > f.TTL {
			want, ok = aggtest.BruteForce(f.Aggregation, f.Window, nil, T)
			return want, ok, lookup.StatusExpired
		}
	}
	return want, ok, lookup.StatusPresent
}

// freshnessService lists, after featureFile's features, a service of the
// ttl and derived features.
const freshnessService = `services:
  - {name: freshness, owner: t, description: d, features: [txn_last_fresh, txn_sum_ratio, txn_sum_1d@1]}
`

// TestDerivedAndTTLOnEveryReadPath checks a derived feature (txn_sum_ratio
// = txn_sum_1d / txn_avg_30d) and a ttl (txn_last_fresh: the lifetime last
// amount, 2 days) through a real worker and lookup service whose clock the
// test sets, on POST /v1/lookup, GET /v1/features, Feast, a feature service,
// backfill (values and statuses) and skew (0 mismatches), at the ttl
// boundary exactly: a last event exactly ttl old is PRESENT, 1 ms later
// EXPIRED (null; Feast's OUTSIDE_MAX_AGE). Keys:
//
//	a       transactions 1h and 2h before now
//	b       one transaction 3 days before now: EXPIRED from the start
//	zero    one transaction 2 days before now of amount 0: avg 0, so the
//	        ratio divides by zero (null)
//	old     one transaction 40 days before now: known (a lifetime feature
//	        reads it, so backfill replays it too), the ratio's avg input is
//	        null (null)
//	nobody  never seen: NOT_FOUND
//
// (The lookups are as of about 2 days after now, so a key known only by a
// login would be NOT_FOUND in backfill, which replays logins from a day
// before T only: the documented limit of "known" in backfill.)
func TestDerivedAndTTLOnEveryReadPath(t *testing.T) {
	k, cfg, cl := setup(t, featureFile+freshnessService)
	ctx := context.Background()
	p := newProduced()
	now := time.Now()
	ms := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	newestA := ms(time.Hour)
	produceEvents(t, ctx, cl, cfg, []event{
		{source: "transactions", key: "a", ts: newestA, amount: 10},
		{source: "transactions", key: "a", ts: ms(2 * time.Hour), amount: 30},
		{source: "transactions", key: "b", ts: ms(3 * 24 * time.Hour), amount: 5},
		{source: "transactions", key: "zero", ts: ms(2*24*time.Hour - 2*time.Hour), amount: 0},
		{source: "transactions", key: "old", ts: ms(40 * 24 * time.Hour), amount: 7},
	}, p)
	dir := t.TempDir()
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w"))
	var clock atomic.Int64 // the lookup service's now (ms); 0: the wall clock
	st, err := lookup.OpenStore(filepath.Join(dir, "view"), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := lookup.New(lookup.Options{Brokers: k.Brokers, Config: cfg, Store: st, Now: func() time.Time {
		if c := clock.Load(); c != 0 {
			return time.UnixMilli(c)
		}
		return time.Now()
	}})
	if err != nil {
		t.Fatal(err)
	}
	ls := serveLookup(t, svc, st)
	keys := []string{"a", "b", "zero", "old", "nobody"}
	waitExact(t, ls, cfg, p, keys, 60*time.Second)

	ttl := int64(2 * aggregations.Day)
	T1, T2 := newestA+ttl, newestA+ttl+1 // a's last event exactly ttl old, then 1 ms older
	var served []backfill.Point
	lastFresh, ratio := "txn_last_fresh@1", "txn_sum_ratio@1"
	for _, T := range []int64{T1, T2} {
		clock.Store(T)
		// POST /v1/lookup: every feature against the brute force as of T,
		// then the rules by name.
		resp, bad := lookupAll(t, ls, cfg, keys, byID)
		if bad != nil {
			t.Fatal(bad)
		}
		if resp.AsOf.UnixMilli() != T {
			t.Fatalf("as_of %v, want the test clock %d", resp.AsOf, T)
		}
		bad, n := compareAnswer(resp, keys, cfg.Features, byID, p)
		if len(bad) > 0 || n != len(keys)*len(cfg.Features) {
			t.Fatalf("as of T=%d: %d values compared, differing from the brute force: %v", T, n, bad)
		}
		for _, key := range keys {
			served = append(served, backfill.Point{Key: key, T: T})
		}
		get := func(key, id string) lookup.FeatureValue {
			for _, r := range resp.Results {
				if r.Key == key {
					return r.Features[id]
				}
			}
			return lookup.FeatureValue{}
		}
		wantA := lookup.FeatureValue{Status: lookup.StatusPresent, Value: ptr(10)}
		if T == T2 {
			wantA = lookup.FeatureValue{Status: lookup.StatusExpired}
		}
		for _, rule := range []struct {
			name, key, feature string
			want               lookup.FeatureValue
		}{
			{"a's last event exactly ttl old (T1) is fresh; 1 ms later (T2) it expired", "a", lastFresh, wantA},
			{"a last event older than the ttl is EXPIRED, null", "b", lastFresh, lookup.FeatureValue{Status: lookup.StatusExpired}},
			{"ratio of a: no sum in the last day is 0 / avg", "a", ratio, lookup.FeatureValue{Status: lookup.StatusPresent, Value: ptr(0)}},
			{"ratio over an avg of 0 (division by zero) is null", "zero", ratio, lookup.FeatureValue{Status: lookup.StatusPresent}},
			{"ratio over a null avg is null", "old", ratio, lookup.FeatureValue{Status: lookup.StatusPresent}},
			{"an unknown key's derived value is NOT_FOUND", "nobody", ratio, lookup.FeatureValue{Status: lookup.StatusNotFound}},
		} {
			got := get(rule.key, rule.feature)
			if got.Status != rule.want.Status || (got.Value == nil) != (rule.want.Value == nil) || got.Value != nil && *got.Value != *rule.want.Value {
				t.Errorf("T=%d %s: %s %s is %s %v", T, rule.name, rule.key, rule.feature, got.Status, fmtPtr(got.Value))
			}
		}

		// GET /v1/features: the same, for every feature of a.
		var one lookup.LookupResponse
		r, err := http.Get(ls.url + "/v1/features/user/a")
		if err != nil {
			t.Fatal(err)
		}
		decodeInto(t, r, &one)
		served = append(served, backfill.Point{Key: "a", T: T})
		if bad, n := compareAnswer(&one, []string{"a"}, cfg.Features, byName, p); len(bad) > 0 || n != len(cfg.Features) {
			t.Errorf("T=%d GET /v1/features/user/a: %d values compared, differing: %v", T, n, bad)
		}

		// The feature service: exactly its features, the same values.
		var svcResp lookup.LookupResponse
		if code := postJSON(t, ls.url+"/v1/lookup", map[string]any{"entity": "user", "keys": keys, "feature_service": "freshness"}, &svcResp); code != http.StatusOK {
			t.Fatalf("service lookup: HTTP %d", code)
		}
		for _, key := range keys {
			served = append(served, backfill.Point{Key: key, T: T})
		}
		for i, key := range keys {
			for _, ref := range []string{"txn_last_fresh", "txn_sum_ratio", "txn_sum_1d@1"} {
				f, _ := cfg.Feature(ref)
				got, want := svcResp.Results[i].Features[ref], get(key, f.ID)
				if len(svcResp.Results[i].Features) != 3 || got.Status != want.Status || fmtPtr(got.Value) != fmtPtr(want.Value) {
					t.Errorf("T=%d service freshness, %s %s: %s %v; POST /v1/lookup: %s %v", T, key, ref, got.Status, fmtPtr(got.Value), want.Status, fmtPtr(want.Value))
				}
			}
		}

		// Feast: EXPIRED without a value is OUTSIDE_MAX_AGE; a derived
		// value PRESENT, a derived null NULL_VALUE.
		var feast lookup.FeastResponse
		if code := postJSON(t, ls.url+"/get-online-features", map[string]any{
			"features": []string{"transactions:txn_last_fresh", "derived:txn_sum_ratio"}, "entities": map[string][]string{"user_id": keys},
		}, &feast); code != http.StatusOK {
			t.Fatalf("POST /get-online-features: HTTP %d", code)
		}
		for _, key := range keys {
			served = append(served, backfill.Point{Key: key, T: T})
		}
		for j, id := range []string{lastFresh, ratio} {
			col := feast.Results[j+1]
			for i, key := range keys {
				jv := get(key, id)
				wantStatus, want := "PRESENT", any(nil)
				switch {
				case jv.Status == lookup.StatusNotFound:
					wantStatus = "NOT_FOUND"
				case jv.Value == nil && jv.Status == lookup.StatusExpired:
					wantStatus = "OUTSIDE_MAX_AGE"
				case jv.Value == nil:
					wantStatus = "NULL_VALUE"
				default:
					want = *jv.Value
				}
				if col.Statuses[i] != wantStatus || col.Values[i] != want {
					t.Errorf("T=%d feast %s of %s: %s %v, want %s %v", T, id, key, col.Statuses[i], col.Values[i], wantStatus, want)
				}
			}
		}
	}
	if got := svc.Ready(); !got {
		t.Fatal("lookup service not ready")
	}

	// Backfill: the same values and statuses as of T1 and T2, by the same
	// rules (Values.Status).
	var points []backfill.Point
	for _, T := range []int64{T1, T2} {
		for _, key := range keys {
			points = append(points, backfill.Point{Key: key, T: T})
		}
	}
	ids := make([]string, len(cfg.Features))
	for i, f := range cfg.Features {
		ids[i] = f.ID
	}
	vals, err := backfill.Compute(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Features: ids}, points)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	for r, pt := range points {
		for c, f := range vals.Features {
			got, ok := vals.Get(r, c)
			want, wantOK, status := bruteForceLocked(p, f, pt.Key, pt.T)
			if ok != wantOK || ok && !aggtest.Within(f.Aggregation, got, want) || vals.Status(r, c) != status {
				t.Errorf("backfill %s %s as of %d: %v %v %s, want %v %v %s", pt.Key, f.ID, pt.T, got, ok, vals.Status(r, c), want, wantOK, status)
			}
		}
	}
	p.mu.Unlock()
	col := func(id string) int {
		for c, f := range vals.Features {
			if f.ID == id {
				return c
			}
		}
		t.Fatalf("no column %s", id)
		return -1
	}
	if s1, s2 := vals.Status(0, col(lastFresh)), vals.Status(len(keys), col(lastFresh)); s1 != backfill.StatusPresent || s2 != backfill.StatusExpired {
		t.Errorf("backfill: a's txn_last_fresh is %s at T1 and %s at T2, want PRESENT then EXPIRED", s1, s2)
	}

	// skew: every value served above, derived and expired ones included,
	// recomputed by the backfill engine: 0 mismatches.
	// The lookup service logs asynchronously, after the wall-clock lookups
	// of waitExact: run skew until it reads every entry served above.
	keep := map[servedAt]bool{}
	for _, pt := range served {
		keep[servedAt{pt.Key, pt.T}] = true
	}
	var rep *skew.Report
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if rep, err = skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Keep: keepServed(keep), Examples: 3}); err != nil {
			t.Fatal(err)
		}
		if rep.Entries == int64(len(served)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("skew read %d of the %d entries served as of T1 and T2", rep.Entries, len(served))
		}
	}
	// Per T: every feature of every key, every feature of a, the
	// service's 3 features and Feast's 2 of every key.
	nf := len(cfg.Features)
	wantCompared := int64(2 * (len(keys)*nf + nf + len(keys)*3 + len(keys)*2))
	if rep.Mismatches != 0 || rep.Compared != wantCompared || rep.Feature(ratio) == nil || rep.Feature(ratio).Rows == 0 || rep.Feature(lastFresh) == nil || rep.Feature(lastFresh).Rows == 0 {
		t.Fatalf("skew: %d mismatches of %d compared (want %d); derived %+v, ttl %+v", rep.Mismatches, rep.Compared, wantCompared, rep.Feature(ratio), rep.Feature(lastFresh))
	}
	t.Logf("skew: %d served values (%d of the derived feature, %d of the ttl feature) recomputed, 0 mismatches",
		rep.Compared, rep.Feature(ratio).Rows, rep.Feature(lastFresh).Rows)
}
