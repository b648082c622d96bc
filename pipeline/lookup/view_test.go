package lookup

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/state"
)

// testView is an entity view with features of no tile, one tile and enough
// tiles for a series longer than 127 bytes (a length prefix of 2 bytes).
func testView() *entityView {
	e := new(entityView)
	for n, id := range []string{"empty@1", "one@1", "many@2"} {
		i := e.add(id, int32(n))
		e.updated[i] = int64(1_700_000_000_000 + n)
		for k := range []int{0, 1, 40}[n] {
			e.series[i].SetTile(aggregations.Tile{Start: int64(k) * 3600_000, IR: aggregations.IR{Count: int64(k + 1), Sum: float64(k) + 0.5}})
		}
	}
	return e
}

// The view layout round-trips through entityView and lookupView, and each
// series is length-prefixed (what lets a lookup skip the series it does not
// need).
func TestViewLayoutRoundTrip(t *testing.T) {
	want := testView()
	enc := want.encode(nil)
	var got entityView
	if err := got.decode(enc); err != nil {
		t.Fatal(err)
	}
	if again := got.encode(nil); !bytes.Equal(again, enc) {
		t.Fatalf("decode+encode = %x, want %x", again, enc)
	}
	// Walk the layout by hand: uvarint(n), n × (lp id, uvarint partition, varint updated, lp series).
	src := enc
	n, w := binary.Uvarint(src)
	src = src[w:]
	if n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	for i := range int(n) {
		l, w := binary.Uvarint(src)
		id := string(src[w : w+int(l)])
		src = src[w+int(l):]
		p, w := binary.Uvarint(src)
		src = src[w:]
		if p != uint64(want.parts[i]) {
			t.Errorf("entry %d: partition %d, want %d", i, p, want.parts[i])
		}
		u, w := binary.Varint(src)
		src = src[w:]
		sl, w := binary.Uvarint(src)
		series := src[w : w+int(sl)]
		src = src[w+int(sl):]
		if id != want.ids[i] || u != want.updated[i] {
			t.Errorf("entry %d: %s %d, want %s %d", i, id, u, want.ids[i], want.updated[i])
		}
		if exp := aggregations.AppendSeries(nil, &want.series[i]); !bytes.Equal(series, exp) {
			t.Errorf("entry %d: series %x, want %x", i, series, exp)
		}
	}
	if len(src) != 0 {
		t.Fatalf("%d bytes after the entries", len(src))
	}
	var lv lookupView
	if err := lv.parse(enc); err != nil {
		t.Fatal(err)
	}
	for i, id := range want.ids {
		j := lv.index(id)
		if j != i {
			t.Fatalf("index(%s) = %d, want %d", id, j, i)
		}
		sr, err := lv.seriesAt(j)
		if err != nil {
			t.Fatal(err)
		}
		if got, exp := aggregations.AppendSeries(nil, sr), aggregations.AppendSeries(nil, &want.series[i]); !bytes.Equal(got, exp) {
			t.Errorf("%s: parsed series %x, want %x", id, got, exp)
		}
	}
	// Bytes after a series inside its length prefix are refused.
	var e entityView
	e.add("x@1", 0)
	bad := binary.AppendUvarint(nil, 1)
	bad = binary.AppendUvarint(bad, 3)
	bad = append(bad, "x@1"...)
	bad = binary.AppendUvarint(bad, 0)
	bad = binary.AppendVarint(bad, 0)
	s := append(aggregations.AppendSeries(nil, &e.series[0]), 0)
	bad = binary.AppendUvarint(bad, uint64(len(s)))
	bad = append(bad, s...)
	if err := e.decode(bad); err == nil {
		t.Error("decode accepted a series with trailing bytes")
	}
}

// appendIndexed used to allocate a scratch buffer per call; encode must
// only grow dst.
func TestEncodeAllocatesOnlyDst(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	e := testView()
	buf := e.encode(nil)
	if n := testing.AllocsPerRun(100, func() { buf = e.encode(buf[:0]) }); n != 0 {
		t.Fatalf("encode into a large enough buffer allocated %v times", n)
	}
}

// decode sizes a fresh view once from the entry count it reads: the four
// slices are allocated once, not grown entry by entry (for 20 features,
// six reallocations each).
func TestDecodeSizesTheViewOnce(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	const n = 20
	var src entityView
	for i := range n {
		j := src.add(fmt.Sprintf("f%02d@1", i), 0)
		src.series[j].SetTile(aggregations.Tile{Start: 60_000, IR: aggregations.IR{Count: 1, Sum: 2}})
	}
	buf := src.encode(nil)
	// Per entry: its id and its one tile's slice; per view: its four slices.
	const want = 2*n + 4
	allocs := testing.AllocsPerRun(50, func() {
		var e entityView
		if err := e.decode(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > want {
		t.Fatalf("decoding a view of %d entries into a fresh view allocated %v times, want at most %d", n, allocs, want)
	}
}

// A cache miss caches exactly the bytes Pebble holds, with one copy (no
// decode and re-encode), and a hit then serves them.
func TestViewMissCachesThePebbleBytes(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	s := fx.svc
	k := keys.View(nil, "user", "u1")
	stored, found, err := s.o.Store.Get(nil, k)
	if err != nil || !found {
		t.Fatalf("fixture view of u1: found %v, %v", found, err)
	}
	v := new(lookupView)
	miss := func() {
		s.cache.invalidate(k)
		if err := s.view("user", "u1", v); err != nil {
			t.Fatal(err)
		}
	}
	miss()
	cached, _ := s.cache.get(k)
	if !bytes.Equal(cached, stored) {
		t.Fatalf("cached %x, Pebble holds %x", cached, stored)
	}
	if v.index("txn_count_7d@1") < 0 {
		t.Fatalf("the view parsed on a miss lacks txn_count_7d@1: %q", v.ids)
	}
	if raceEnabled {
		return // allocation counts are meaningless under the race detector
	}
	// A miss allocates the value's copy (kept by the cache) and the cache's
	// map key; decoding and re-encoding would allocate a series tree and
	// growing buffers besides.
	if n := testing.AllocsPerRun(100, miss); n > 2 {
		t.Fatalf("a cache miss allocated %v times, want at most 2 (the value and the cache key)", n)
	}
	// Cache disabled: the value is read into the view's reused buffer.
	off := newFixture(t, Options{CacheEntries: -1}, true)
	ov := new(lookupView)
	read := func() {
		if err := off.svc.view("user", "u1", ov); err != nil {
			t.Fatal(err)
		}
	}
	read()
	if n := testing.AllocsPerRun(100, read); n != 0 {
		t.Fatalf("a read with the cache disabled allocated %v times, want 0", n)
	}
}

// The answer path (resolve, read views from a warm cache, fold, encode the
// JSON) allocates nothing: every buffer is pooled or kept in a pooled
// object.
func TestAnswerPathDoesNotAllocate(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	s := fx.svc
	info := s.entities["user"]
	keyList := []string{"u1", "u2", "42", "u404"}
	refs := []string{"txn_amount_avg", "txn_count_7d@1", "login_count_1h", "txn_amount_max_30d"} // the last is deprecated
	var buf []byte
	run := func() {
		a, err := s.lookup(info, keyList, refs)
		if err != nil {
			t.Fatal(err)
		}
		buf = a.appendJSON(buf[:0])
		a.release()
	}
	run() // warm the cache and the pools
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Fatalf("answering from a warm cache allocated %v times per request, want 0", n)
	}
	if testutil.ToFloat64(s.answerHits) == 0 {
		t.Fatal("no key was answered from the answer cache")
	}
	// Folding the views (the answer cache off) allocates nothing either.
	s.o.NoAnswerCache = true
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Fatalf("answering from warm views without the answer cache allocated %v times per request, want 0", n)
	}
	if !bytes.Contains(buf, []byte("feature txn_amount_max_30d@1 is deprecated")) {
		t.Fatalf("the deprecation warning is missing: %s", buf)
	}
}

func TestCacheShardIsOneCacheLine(t *testing.T) {
	if n := unsafe.Sizeof(cacheShard{}); n != 64 {
		t.Fatalf("cacheShard is %d bytes, want 64 (one cache line)", n)
	}
	if off := unsafe.Offsetof(viewCache{}.shards); off != 0 {
		t.Fatalf("viewCache.shards at offset %d, want 0", off)
	}
}

// encodeV1 is the layout before viewFormat 2: series not length-prefixed.
func encodeV1(e *entityView) []byte {
	dst := binary.AppendUvarint(nil, uint64(len(e.ids)))
	for i, id := range e.ids {
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		dst = append(dst, id...)
		dst = binary.AppendVarint(dst, e.updated[i])
		dst = aggregations.AppendSeries(dst, &e.series[i])
	}
	return dst
}

// writeV1View writes a view of one entity and a feature-log offset in the
// old layout, without a format marker, as an older featurepipe left it.
func writeV1View(t *testing.T, st *state.Store, topic string) {
	t.Helper()
	b := st.NewBatch()
	if err := b.Set(keys.View(nil, "user", "u1"), encodeV1(testView()), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(keys.ViewLogOffset(topic, 0), keys.PutU64(17), nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(b); err != nil {
		t.Fatal(err)
	}
}

// A view of the old layout is cleared (to be rebuilt from the feature log)
// and marked; a view of a newer format is refused, untouched; a current
// one is left as it is.
func TestViewFormat(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	s, st := fx.svc, fx.svc.o.Store
	topic := fx.cfg.Kafka.FeatureLogTopic
	has := func(k []byte) bool {
		t.Helper()
		_, found, err := st.Get(nil, k)
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	// The fixture's view is current: kept.
	if err := s.checkViewFormat(); err != nil {
		t.Fatal(err)
	}
	if !has(keys.View(nil, "user", "u2")) {
		t.Fatal("a current view was cleared")
	}
	// The old layout, without a marker.
	b := st.NewBatch()
	_ = b.Delete(viewFormatKey, nil)
	if err := st.Commit(b); err != nil {
		t.Fatal(err)
	}
	writeV1View(t, st, topic)
	if err := s.checkViewFormat(); err != nil {
		t.Fatal(err)
	}
	for _, k := range [][]byte{keys.View(nil, "user", "u1"), keys.View(nil, "user", "u2"), keys.ViewLogOffset(topic, 0)} {
		if has(k) {
			t.Errorf("key %q of the old view survived", k)
		}
	}
	if ver, found, err := st.GetOffset(viewFormatKey); err != nil || !found || ver != viewFormat {
		t.Fatalf("marker after the rebuild: %d %v %v, want %d", ver, found, err, viewFormat)
	}
	if !s.emptyView(topic, map[int32]int64{0: 0, 1: 0}) {
		t.Fatal("the cleared view does not start over")
	}
	// The previous format (2, one series per feature), marked: rebuilt too.
	writeV1View(t, st, topic)
	b = st.NewBatch()
	_ = b.Set(viewFormatKey, keys.PutU64(2), nil)
	if err := st.Commit(b); err != nil {
		t.Fatal(err)
	}
	if err := s.checkViewFormat(); err != nil {
		t.Fatal(err)
	}
	if has(keys.View(nil, "user", "u1")) || has(keys.ViewLogOffset(topic, 0)) {
		t.Error("a view of format 2 survived: its series are not per source partition")
	}
	// A newer format is refused, and kept.
	writeV1View(t, st, topic)
	b = st.NewBatch()
	_ = b.Set(viewFormatKey, keys.PutU64(viewFormat+1), nil)
	if err := st.Commit(b); err != nil {
		t.Fatal(err)
	}
	err := s.checkViewFormat()
	if err == nil || !strings.Contains(err.Error(), "delete the view's directory") {
		t.Fatalf("newer format: %v, want an error saying to delete the view", err)
	}
	if !has(keys.View(nil, "user", "u1")) {
		t.Fatal("a view of a newer format was cleared")
	}
}

// Run rebuilds a view left in the old layout instead of misreading it:
// once ready, the entity the old view held is unknown (the feature log of
// this test is empty), not an error.
func TestRunRebuildsAnOldView(t *testing.T) {
	c := newTestCluster(t, 3)
	cfg := loadTestConfig(t)
	st := openTestStore(t)
	writeV1View(t, st, cfg.Kafka.FeatureLogTopic)
	svc, err := New(Options{Brokers: c.ListenAddrs(), Config: cfg, Store: st, LookupLogSample: NoLookupLog})
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, svc)
	waitReady(t, svc, 10*time.Second, "the service did not become ready")
	fx := &fixture{svc: svc, cfg: cfg, h: svc.Handler()}
	rec := fx.do(t, http.MethodPost, "/v1/lookup", `{"entity":"user","keys":["u1"],"features":["txn_count_7d"]}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	var resp LookupResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if got := resp.Results[0].Features["txn_count_7d"].Status; got != StatusNotFound {
		t.Fatalf("u1 after the rebuild: %s, want %s", got, StatusNotFound)
	}
}
