package lookup

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/state"
)

// fixtureNow is the fixed clock of every fixture: lookups are answered as of
// it. It is deliberately not aligned to any hop, so sawtooth window starts
// differ from T - size.
var fixtureNow = time.Date(2025, 3, 14, 12, 30, 15, 250_000_000, time.UTC)

// fixtureEvents are the raw events behind the fixture's view, by source and
// entity key. They are the input of the brute-force checks: the view is built
// from them with the tile code, the expected answers without it.
type fixtureEvents map[string]map[string][]aggregations.Event

// arrival is the feature-log record time (updated_at) the fixture stores for
// every feature fed by a source.
var arrival = map[string]time.Duration{
	"transactions": -42 * time.Second,
	"logins":       -7 * time.Minute,
	"reviews":      -time.Hour,
}

// fixtureData returns the fixture events for T:
//
//	u1    transactions over 40 days, with events exactly at T (excluded), at
//	      T-1ms, and on both sides of the 7d/6h window start; logins, some
//	      within the last hour
//	u2    transactions 40 to 60 days old only (every finite window empty, the
//	      lifetime one not); no logins
//	42    a few recent transactions; logins older than 1h
//	u404  nothing at all
//	u7    one login exactly at T only: not yet known as of T
//	u8    one login 1ms in the future only: not yet known as of T
//	m1    merchant reviews
//
// u2's finite-window tiles are all past the worker's expiry horizon: its view
// holds no series for those features (as a replica that replays a compacted
// feature log sees them), only its first-seen marker and its lifetime ones.
func fixtureData(T int64) fixtureEvents {
	rng := rand.New(rand.NewPCG(7, 11))
	ev := fixtureEvents{"transactions": {}, "logins": {}, "reviews": {}}
	seq := int64(0)
	add := func(source, key string, ts int64, v float64) {
		seq++
		ev[source][key] = append(ev[source][key], aggregations.Event{TS: ts, Seq: seq, Value: v})
	}
	cents := func(max int) float64 { return float64(rng.IntN(max*100)) / 100 }
	for range 30 {
		add("transactions", "u1", T-1-rng.Int64N(40*aggregations.Day), cents(500))
	}
	for range 4 {
		add("transactions", "u1", T-1-rng.Int64N(aggregations.Hour), cents(50))
	}
	start7d := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}.Start(T)
	add("transactions", "u1", start7d, 111)   // first instant of txn_count_7d's window
	add("transactions", "u1", start7d-1, 222) // just before it
	add("transactions", "u1", T-1, 3.25)      // the newest event that counts
	add("transactions", "u1", T, 9999)        // at T: never part of an answer as of T
	for range 6 {
		add("logins", "u1", T-1-rng.Int64N(3*aggregations.Hour), 0)
	}
	for range 5 {
		add("transactions", "u2", T-40*aggregations.Day-rng.Int64N(20*aggregations.Day), cents(100))
	}
	for range 3 {
		add("transactions", "42", T-1-rng.Int64N(6*aggregations.Day), cents(80))
	}
	for range 2 {
		add("logins", "42", T-2*aggregations.Hour-rng.Int64N(aggregations.Day), 0)
	}
	for range 8 {
		add("reviews", "m1", T-1-rng.Int64N(20*aggregations.Day), float64(1+rng.IntN(5)))
	}
	add("logins", "u7", T, 0)
	add("logins", "u8", T+1, 0)
	return ev
}

// fixture is a lookup Service whose view was written directly (no Kafka), with
// the events it was built from.
type fixture struct {
	svc    *Service
	cfg    *config.File
	events fixtureEvents
	T      int64
	h      http.Handler
}

func loadTestConfig(t testing.TB) *config.File {
	t.Helper()
	cfg, err := config.Load("testdata/features.yaml")
	if err != nil {
		t.Fatalf("test feature file: %v", err)
	}
	return cfg
}

// newFixture opens a store in a temporary directory, writes the fixture view
// into it the way the feature-log consumer would (one value per entity, every
// feature fed by a source the entity has events in), and returns a Service
// answering as of fixtureNow. o's Brokers, Config, Store and Now are set by
// newFixture. ready=false leaves the service catching up.
func newFixture(t testing.TB, o Options, ready bool) *fixture {
	t.Helper()
	return newFixtureWith(t, o, ready, nil)
}

// newFixtureWith is newFixture with the test config changed by edit (when
// not nil) before the service is built.
func newFixtureWith(t testing.TB, o Options, ready bool, edit func(*config.File)) *fixture {
	t.Helper()
	cfg := loadTestConfig(t)
	if edit != nil {
		edit(cfg)
	}
	st := openTestStore(t)
	T := fixtureNow.UnixMilli()
	events := fixtureData(T)
	writeView(t, st, cfg, events, T)
	o.Brokers, o.Config, o.Store = []string{"127.0.0.1:1"}, cfg, st
	o.Now = func() time.Time { return fixtureNow }
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if ready {
		svc.setCatchUp(map[int32]int64{}, nil)
		svc.registryCaughtUp()
	}
	return &fixture{svc: svc, cfg: cfg, events: events, T: T, h: svc.Handler()}
}

// writeView folds events into per-entity view values with the tile code, as
// workers (Series.Apply and Expire at their clock, here T) and the view
// consumer do: a feature whose every tile expired has no series (its
// tombstones compacted away), and every source the entity has events in
// has its first-seen marker (the smallest event time).
func writeView(t testing.TB, st *state.Store, cfg *config.File, events fixtureEvents, T int64) {
	t.Helper()
	b := st.NewBatch()
	for _, ent := range cfg.Entities {
		entKeys := map[string]bool{}
		for _, f := range cfg.EntityFeatures(ent.Name) {
			for k := range events[f.Source] {
				entKeys[k] = true
			}
		}
		for key := range entKeys {
			var e entityView
			seen := map[string]bool{}
			for _, f := range cfg.EntityFeatures(ent.Name) {
				evs := events[f.Source][key]
				if len(evs) == 0 {
					continue
				}
				if !seen[f.Source] {
					seen[f.Source] = true
					first := evs[0].TS
					for _, x := range evs {
						first = min(first, x.TS)
					}
					var marker aggregations.Series
					marker.Base.Update(aggregations.Event{TS: first})
					setSeen(&e.series[e.add(keys.SeenFeatureID(f.Source), 0)], aggregations.Tile{Start: aggregations.BaseStart, IR: marker.Base})
				}
				var sr aggregations.Series
				for _, x := range evs {
					sr.Apply(f.Window, x, T)
				}
				sr.Expire(f.Window, T, nil)
				if len(sr.Tiles) == 0 && sr.Base.Empty() {
					continue
				}
				i := e.add(f.ID, 0)
				e.series[i] = sr
				e.updated[i] = fixtureNow.Add(arrival[f.Source]).UnixMilli()
			}
			if err := b.Set(keys.View(nil, ent.Name, key), e.encode(nil), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := markViewFormat(b); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(b); err != nil {
		t.Fatal(err)
	}
}

// do sends one request to the fixture's handler.
func (fx *fixture) do(t testing.TB, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	rec := httptest.NewRecorder()
	fx.h.ServeHTTP(rec, req)
	return rec
}

// expected is the independently computed answer for one (key, feature).
type expected struct {
	value  *float64
	status string
	// updated is when the feature-log record arrived, nil for NOT_FOUND.
	updated *time.Time
}

// expect computes the answer for one feature of one key from the raw events
// by definition (aggtest.BruteForce), not from tiles, with the status
// contract: NOT_FOUND (value null) when the key has no event with ts < T in
// any source of the feature's entity; otherwise PRESENT when at least one
// event of the feature is in the window as of T, EMPTY_WINDOW when none is;
// the definition's default replaces a null value of a known key. updated is
// set when a record of the feature survives the worker's expiry (an event
// whose tile is at or after the horizon, or any event for lifetime windows).
func (fx *fixture) expect(t testing.TB, f *config.Feature, key string) expected {
	t.Helper()
	var x expected
	known := false
	for _, g := range fx.cfg.EntityFeatures(f.Entity) {
		for _, e := range fx.events[g.Source][key] {
			known = known || e.TS < fx.T
		}
	}
	if !known {
		x.status = StatusNotFound
		return x
	}
	evs := fx.events[f.Source][key]
	x.status = StatusEmptyWindow
	if n, _ := aggtest.BruteForce(aggregations.Count, f.Window, evs, fx.T); n > 0 {
		x.status = StatusPresent
	}
	for _, e := range evs {
		if f.Window.Lifetime() || f.Window.TileStart(e.TS) >= f.Window.Horizon(fx.T) {
			u := fixtureNow.Add(arrival[f.Source]).UTC().Truncate(time.Millisecond)
			x.updated = &u
		}
	}
	if v, ok := aggtest.BruteForce(f.Aggregation, f.Window, evs, fx.T); ok {
		x.value = &v
	} else if f.Default != nil {
		d := *f.Default
		x.value = &d
	}
	return x
}

func fmtValue(v *float64) string {
	if v == nil {
		return "null"
	}
	return fmt.Sprint(*v)
}

// newTestCluster starts a one-broker kfake cluster whose auto-created topics
// have partitions partitions; it is closed when the test ends.
func newTestCluster(t testing.TB, partitions int) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(partitions))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// openTestStore opens a store in a temporary directory, closed when the
// test ends (after the cleanups registered later, such as startRun's).
func openTestStore(t testing.TB) *state.Store {
	t.Helper()
	st, err := OpenStore(t.TempDir(), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return st
}

// startRun runs svc.Run until the test ends: the cleanup cancels it, waits
// for it to return and reports its error.
func startRun(t testing.TB, svc *Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// waitReady waits up to d for svc to become ready, failing the test with
// msg after that.
func waitReady(t testing.TB, svc *Service, d time.Duration, msg string) {
	t.Helper()
	for deadline := time.Now().Add(d); !svc.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
	}
}
