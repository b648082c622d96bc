package lookup

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/state"
)

// startReplica starts a replica without a lookup log on an empty store and
// waits until it is ready (failing with msg after 30 s).
func startReplica(t *testing.T, c *kfake.Cluster, cfg *config.File, msg string) *Service {
	t.Helper()
	svc, err := New(Options{Brokers: c.ListenAddrs(), Config: cfg, Store: openTestStore(t), LookupLogSample: NoLookupLog,
		Now: func() time.Time { return fixtureNow }})
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, svc)
	waitReady(t, svc, 30*time.Second, msg)
	return svc
}

// newFeatureLog starts a broker with the test config's topics and returns a
// client producing to its feature log (opts added).
func newFeatureLog(t *testing.T, opts ...kgo.Opt) (*kfake.Cluster, *config.File, *kgo.Client) {
	t.Helper()
	c := newTestCluster(t, 1)
	cfg := loadTestConfig(t)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(cfg.Kafka.FeatureLogTopic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, cfg); err != nil {
		t.Fatal(err)
	}
	return c, cfg, cl
}

// The view is caught up when its read position reaches the end offsets
// seen at start, not when it sees a record at end-1: here the feature log's
// last entry is a transaction's commit marker (no record at end-1), and the
// replica must still become ready, with the committed tile applied.
func TestViewCatchesUpOverATransactionMarker(t *testing.T) {
	c := newTestCluster(t, 1)
	cfg := loadTestConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := kafka.EnsureTopics(ctx, admin, cfg); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(cfg.Kafka.FeatureLogTopic),
		kgo.TransactionalID("catchup-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	T := fixtureNow.UnixMilli()
	const count = "txn_count_7d@1"
	start := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}.TileStart(T - aggregations.Hour)
	r := &kgo.Record{}
	_, r.Key, r.Value = featurelog.Append(nil, keys.TileRef{Entity: "user", EntityKey: "u1", FeatureID: count, Start: start},
		aggregations.Tile{Start: start, IR: aggregations.IR{Count: 4}}, true)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	svc := startReplica(t, c, cfg, "the replica is not ready 30s after start: the feature log's tail is a transaction marker, and its catch-up waits for a record at end-1")
	e := new(entityView)
	found, err := svc.load("user", "u1", e, nil, nil)
	if err != nil || !found {
		t.Fatalf("u1 in the view: found %v, %v", found, err)
	}
	i := e.index(count, 0)
	if i < 0 {
		t.Fatalf("u1 has no %s series in the view", count)
	}
	if got, ok := e.series[i].Tile(start); !ok || got.IR.Count != 4 {
		t.Fatalf("u1's %s tile: %+v (found %v), want count 4", count, got, ok)
	}
}

// A replica catching up applies each fetch response's feature-log
// partitions together: every user here has a tile in each partition (the
// record key names the tile, so a publication spreads an entity's tiles
// over them), and each user's view is written once
// (featurepipe_view_writes_total), where a batch per partition wrote it
// once per partition; the views hold every tile.
func TestCatchUpWritesEachViewOncePerRound(t *testing.T) {
	c, cfg, cl := newFeatureLog(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	parts, err := kafka.ToEnd(ctx, cl, cfg.Kafka.FeatureLogTopic)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 2 {
		t.Fatalf("the feature log has %d partition(s): the test needs several", len(parts))
	}
	const users, count = 20, "txn_count_7d@1"
	w := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}
	T := fixtureNow.UnixMilli()
	var recs []*kgo.Record
	for u := range users {
		for p := range int32(len(parts)) {
			start := w.TileStart(T - int64(p)*w.Hop)
			r := &kgo.Record{Partition: p}
			_, r.Key, r.Value = featurelog.Append(nil, keys.TileRef{Entity: "user", EntityKey: fmt.Sprintf("u%d", u), FeatureID: count, Start: start},
				aggregations.Tile{Start: start, IR: aggregations.IR{Count: int64(p) + 1}}, true)
			recs = append(recs, r)
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	svc := startReplica(t, c, cfg, "the replica is not ready 30s after start")
	if got := testutil.ToFloat64(svc.Metrics().ViewWrites); got != users {
		t.Errorf("catching up wrote %v views of %d users with a tile in each of %d partitions: want one each", got, users, len(parts))
	}
	for u := range users {
		e := new(entityView)
		if found, err := svc.load("user", fmt.Sprintf("u%d", u), e, nil, nil); err != nil || !found {
			t.Fatalf("u%d in the view: found %v, %v", u, found, err)
		}
		i := e.index(count, 0)
		if i < 0 || len(e.series[i].Tiles) != len(parts) {
			t.Fatalf("u%d's %s: entry %d, want a series of %d tiles", u, count, i, len(parts))
		}
		for p := range len(parts) {
			if got, ok := e.series[i].Tile(w.TileStart(T - int64(p)*w.Hop)); !ok || got.IR.Count != int64(p)+1 {
				t.Errorf("u%d's tile from partition %d: %+v (found %v), want count %d", u, p, got, ok, p+1)
			}
		}
	}
}

// cacheEntries is the number of views in the lookup cache.
func cacheEntries(c *viewCache) int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// A replica catching up does not copy its views into the lookup cache (no
// lookup can read them before it is ready); once ready, a lookup fills the
// cache with what Pebble holds, and a feature-log record committed
// afterwards replaces the cached view, so the next lookup answers the new
// value.
func TestCatchUpLeavesTheLookupCacheToLookups(t *testing.T) {
	c, cfg, cl := newFeatureLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const users, count = 20, "txn_count_7d@1"
	T := fixtureNow.UnixMilli()
	start := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}.TileStart(T - aggregations.Hour)
	tile := func(user string, n int64) *kgo.Record {
		r := &kgo.Record{}
		_, r.Key, r.Value = featurelog.Append(nil, keys.TileRef{Entity: "user", EntityKey: user, FeatureID: count, Start: start},
			aggregations.Tile{Start: start, IR: aggregations.IR{Count: n}}, true)
		return r
	}
	var recs []*kgo.Record
	for u := range users {
		recs = append(recs, tile(fmt.Sprintf("u%d", u), int64(u)+1))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	svc := startReplica(t, c, cfg, "the replica is not ready 30s after start")
	if n := cacheEntries(svc.cache); n != 0 {
		t.Errorf("the lookup cache holds %d views after the catch-up, want 0 (no lookup has run)", n)
	}
	h := svc.Handler()
	lookupCount := func() string {
		req := httptest.NewRequest("POST", "/v1/lookup", strings.NewReader(`{"entity":"user","keys":["u3"],"features":["txn_count_7d"]}`))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("lookup: %d %s", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	if body := lookupCount(); !strings.Contains(body, `"value":4`) {
		t.Fatalf("u3's count after the catch-up: %s, want 4", body)
	}
	if n := cacheEntries(svc.cache); n != 1 {
		t.Errorf("the lookup cache holds %d views after one lookup, want 1", n)
	}
	if err := cl.ProduceSync(ctx, tile("u3", 9)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for body := lookupCount(); !strings.Contains(body, `"value":9`); body = lookupCount() {
		if time.Now().After(deadline) {
			t.Fatalf("u3's count 20s after a new tile was published: %s, want 9", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	v, _ := svc.cache.get(keys.View(nil, "user", "u3"))
	e := new(entityView)
	if err := e.decode(v); err != nil {
		t.Fatalf("u3's cached view: %v", err)
	}
	if i := e.index(count, 0); i < 0 || e.series[i].Tiles[0].IR.Count != 9 {
		t.Errorf("u3's cached view after the new tile: %+v, want count 9", e.series)
	}
}

// load reads the view of one entity into e (the tests' way to read a
// view whole). found is false for an entity the feature log never
// mentioned.
func (s *Service) load(entity, key string, e *entityView, kbuf, vbuf []byte) (found bool, err error) {
	kbuf = keys.View(kbuf[:0], entity, key)
	val, found, err := s.o.Store.Get(vbuf[:0], kbuf)
	if err != nil || !found {
		e.reset()
		return found, err
	}
	if err := e.decode(val); err != nil {
		return false, fmt.Errorf("view of %s %q: %w", entity, key, err)
	}
	return true, nil
}

// A replica that wrote merge operands settles the view: every view is
// written back whole, so that no read merges operands afterwards. Here
// 50,005 records of 5 users (one tile, upserted again and again) are
// applied in two batches or more, two operands per user or more, either
// in the catch-up (the records are there before the replica starts) or
// while it follows the log; once settled, reading every user's view calls
// the merge operator not once, and gives the last value.
func TestReplicaSettlesTheViewItMerged(t *testing.T) {
	defer func(v int64, c int) { settleAfter, settleChunk = v, c }(settleAfter, settleChunk)
	settleAfter, settleChunk = 1, 2 // 5 users: 3 chunks, 2 pauses per settling
	for _, follow := range []bool{false, true} {
		t.Run(fmt.Sprintf("follow=%v", follow), func(t *testing.T) { testSettles(t, follow) })
	}
}

func testSettles(t *testing.T, follow bool) {
	c, cfg, cl := newFeatureLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const users, records, count = 5, logBatchRecords + 5, "txn_count_7d@1"
	w := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}
	start := w.TileStart(fixtureNow.UnixMilli())
	recs := make([]*kgo.Record, records)
	for i := range recs {
		r := &kgo.Record{}
		_, r.Key, r.Value = featurelog.Append(nil, keys.TileRef{Entity: "user", EntityKey: fmt.Sprintf("u%d", i%users), FeatureID: count, Start: start},
			aggregations.Tile{Start: start, IR: aggregations.IR{Count: int64(i + 1)}}, true)
		recs[i] = r
	}
	produce := func() {
		// Two halves, so that a follower sees two polls at least.
		for _, half := range [][]*kgo.Record{recs[:records/2], recs[records/2:]} {
			if err := cl.ProduceSync(ctx, half...).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !follow {
		produce()
	}

	var merges atomic.Int64
	counting := &pebble.Merger{Name: ViewMergerName, Merge: func(key, value []byte) (pebble.ValueMerger, error) {
		merges.Add(1)
		return newViewMerge(key, value)
	}}
	st, err := state.Open(t.TempDir(), state.Options{NoSync: true, Merger: counting})
	if err != nil {
		t.Fatal(err)
	}
	// Closed after startRun's cleanup has stopped Run (cleanups run last
	// registered first), not by a defer, which would close it under a
	// settling still running.
	t.Cleanup(func() { st.Close() })
	svc, err := New(Options{Brokers: c.ListenAddrs(), Config: cfg, Store: st, LookupLogSample: NoLookupLog,
		Now: func() time.Time { return fixtureNow }})
	if err != nil {
		t.Fatal(err)
	}
	var settlings, pauses atomic.Int64
	svc.settled = func(int64) { settlings.Add(1) }
	// Between two chunks the settling pauses as long as the chunk took,
	// without holding viewMu: a commit waits for a chunk at most, not for a
	// whole settling. The hook runs on the settling goroutine as a pause
	// begins, so had the settling kept viewMu, no TryLock could take it
	// during the hook (a feature-log commit may hold it for a moment, hence
	// the retries). From the end of one hook to the start of the next there
	// is the pause, then the next chunk: at least the two chunks' times.
	var pauseErr atomic.Value
	// Only the settling goroutine touches these: one runs at a time, and
	// the next starts after the settler's running flag saw it end.
	var prevEnd time.Time
	var prevTook time.Duration
	svc.settlePausing = func(took time.Duration) {
		began := time.Now()
		pauses.Add(1)
		if took <= 0 {
			pauseErr.Store(fmt.Sprintf("a pause of %v after a chunk", took))
		}
		if !prevEnd.IsZero() && began.Sub(prevEnd) < prevTook+took {
			pauseErr.Store(fmt.Sprintf("%v from one pause to the next, less than the chunk before the first (%v) and the one between (%v): the settling did not pause",
				began.Sub(prevEnd), prevTook, took))
		}
		for deadline := time.Now().Add(5 * time.Second); !svc.viewMu.TryLock(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				pauseErr.Store("viewMu held for 5s during a pause between chunks")
				return
			}
		}
		svc.viewMu.Unlock()
		prevEnd, prevTook = time.Now(), took
	}
	startRun(t, svc)
	waitReady(t, svc, 30*time.Second, "the replica is not ready 30s after start")
	if follow {
		produce()
	}
	// Every value is the last one, and (once settled) reading them all
	// merges nothing.
	read := func() (bad string) {
		for u := range users {
			e := new(entityView)
			if found, err := svc.load("user", fmt.Sprintf("u%d", u), e, nil, nil); err != nil || !found {
				return fmt.Sprintf("u%d in the view: found %v, %v", u, found, err)
			}
			i := e.index(count, 0)
			if i < 0 {
				return fmt.Sprintf("u%d has no %s series", u, count)
			}
			last := int64(records - users + u + 1) // the last record of user u
			if got, ok := e.series[i].Tile(start); !ok || got.IR.Count != last {
				return fmt.Sprintf("u%d's tile: %+v (found %v), want count %d", u, got, ok, last)
			}
		}
		return ""
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		merges.Store(0)
		bad := read()
		if bad == "" && merges.Load() == 0 && settlings.Load() > 0 {
			if msg := pauseErr.Load(); msg != nil {
				t.Fatal(msg)
			}
			if got, want := pauses.Load(), 2*settlings.Load(); got < want {
				t.Fatalf("%d settlings of 5 views, 2 at a time, paused %d times, want %d at least", settlings.Load(), got, want)
			}
			break
		}
		if time.Now().After(deadline) {
			if bad == "" {
				bad = fmt.Sprintf("reading %d users' views called the merge operator %d times, want none", users, merges.Load())
			}
			t.Fatalf("30s after the replica was ready, %d settlings ran: %s", settlings.Load(), bad)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
