package lookup

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// answerCacheWorld drives a lookup service the way a replica runs: random
// feature-log batches applied by the consumer code (tile upserts with
// future-stamped pending events, tombstones, first-seen markers, two source
// partitions), a clock that moves across hop, pending-event and ttl
// boundaries (and sometimes back), and lookups of random keys and feature
// sets; fresh computes the answer from Pebble, bypassing both caches.
type answerCacheWorld struct {
	t     *testing.T
	fx    *fixture
	s     *Service
	a     *logApplier
	clock atomic.Int64
	rng   *rand.Rand
	off   int64
	feats []*config.Feature // the user's aggregated features
	names []string          // every user feature name, derived ones included
	keys  []string
	evTS  []int64  // event times generated, to move the clock onto
	evKey []string // the key of each
	seen  []int    // the indexes of first-seen markers in evTS
	focus string   // a key the next request includes: the one whose event time the clock moved onto
}

func newAnswerCacheWorld(t *testing.T, seed uint64) *answerCacheWorld {
	fx := derivedFixture(t)
	w := &answerCacheWorld{t: t, fx: fx, s: fx.svc, rng: rand.New(rand.NewPCG(seed, 99)),
		keys: []string{"u1", "u2", "42", "u404", "u7", "u8", "n0", "n1", "n2"}}
	w.clock.Store(fx.T)
	w.s.o.Now = func() time.Time { return time.UnixMilli(w.clock.Load()) }
	w.a = newLogApplier(true)
	seen := map[string]bool{}
	for _, f := range fx.cfg.EntityFeatures("user") {
		if f.Derived == nil {
			w.feats = append(w.feats, f)
		}
		if !seen[f.Name] {
			seen[f.Name] = true
			w.names = append(w.names, f.Name)
		}
		w.names = append(w.names, f.ID)
	}
	return w
}

// record returns one random feature-log record near the clock.
func (w *answerCacheWorld) record() *kgo.Record {
	T, rng := w.clock.Load(), w.rng
	key := w.keys[rng.IntN(len(w.keys))]
	ref := keys.TileRef{Entity: "user", EntityKey: key, SourcePartition: int32(rng.IntN(2))}
	var tile aggregations.Tile
	ok := true
	if rng.IntN(8) == 0 { // a first-seen marker
		ref.FeatureID = keys.SeenFeatureID([]string{"transactions", "logins"}[rng.IntN(2)])
		ref.Start = aggregations.BaseStart
		ts := T + rng.Int64N(2*aggregations.Hour) - aggregations.Hour
		w.seen = append(w.seen, len(w.evTS))
		w.evTS, w.evKey = append(w.evTS, ts), append(w.evKey, key)
		var marker aggregations.Series
		marker.Base.Update(aggregations.Event{TS: ts})
		tile = aggregations.Tile{Start: aggregations.BaseStart, IR: marker.Base}
	} else {
		f := w.feats[rng.IntN(len(w.feats))]
		win := f.Window
		ref.FeatureID = f.ID
		hop := win.Hop
		ref.Start = win.TileStart(T + rng.Int64N(4*hop) - 2*hop)
		if win.Lifetime() && rng.IntN(4) == 0 {
			ref.Start = aggregations.BaseStart
		}
		var sr aggregations.Series
		now := T + rng.Int64N(2*hop) - hop // the worker's clock, ahead or behind
		for range 1 + rng.IntN(3) {
			ts := ref.Start + rng.Int64N(hop)
			if ref.Start == aggregations.BaseStart {
				ts = T - rng.Int64N(40*aggregations.Day)
			}
			w.evTS, w.evKey = append(w.evTS, ts), append(w.evKey, key)
			sr.Apply(win, aggregations.Event{TS: ts, Seq: rng.Int64N(1000), Value: float64(rng.IntN(100))}, now)
		}
		tile, ok = sr.Tile(ref.Start)
		if rng.IntN(10) == 0 {
			ok = false // a tombstone
		}
	}
	r := &kgo.Record{Offset: w.off, Timestamp: time.UnixMilli(T - rng.Int64N(60_000))}
	w.off++
	_, r.Key, r.Value = featurelog.Append(nil, ref, tile, ok)
	return r
}

// apply applies one batch of random records, as the consumer does.
func (w *answerCacheWorld) apply() {
	var recs []*kgo.Record
	for range 1 + w.rng.IntN(6) {
		recs = append(recs, w.record())
	}
	if err := w.s.applyLog(w.a, w.fx.cfg.Kafka.FeatureLogTopic, 0, recs); err != nil {
		w.t.Fatal(err)
	}
}

// tick moves the clock: by a millisecond or a few minutes, onto a hop
// boundary of 1h, 6h or 1d (or a millisecond before), onto an event time or
// that time plus the ttl (1d) (same), or back a little.
func (w *answerCacheWorld) tick() {
	T, rng := w.clock.Load(), w.rng
	w.focus = ""
	jitter := -rng.Int64N(2) // the checks also look up 1 ms later
	switch rng.IntN(6) {
	case 0:
		T++
	case 1:
		T += rng.Int64N(5 * aggregations.Minute)
	case 2:
		h := []int64{aggregations.Hour, 6 * aggregations.Hour, aggregations.Day}[rng.IntN(3)]
		T = (T/h+1)*h + jitter
	case 3: // onto an event time, a ttl expiry or a first-seen time
		if len(w.evTS) == 0 {
			break
		}
		i := rng.IntN(len(w.evTS))
		ts := w.evTS[i]
		switch rng.IntN(3) {
		case 0: // when the newest event of a feature with a ttl expires, as the view holds it now
			f := w.feats[rng.IntN(len(w.feats))]
			key := w.keys[rng.IntN(len(w.keys))]
			if ir := w.readIR(key, f, T); f.TTL > 0 && !ir.Empty() {
				T, w.focus = ir.LastTS+f.TTL+jitter, key
				w.clock.Store(T)
				return
			}
		case 1:
			if len(w.seen) > 0 {
				i = w.seen[rng.IntN(len(w.seen))]
				ts = w.evTS[i]
			}
		}
		if ts > T-aggregations.Hour {
			T, w.focus = ts+jitter, w.evKey[i]
		}
	case 4:
		T -= rng.Int64N(10 * aggregations.Minute)
	default:
		T += rng.Int64N(aggregations.Hour)
	}
	w.clock.Store(T)
}

// readIR is feature f of key folded as of T from the Pebble view.
func (w *answerCacheWorld) readIR(key string, f *config.Feature, T int64) aggregations.IR {
	val, found, err := w.s.o.Store.Get(nil, keys.View(nil, "user", key))
	if err != nil || !found || len(val) == 0 {
		return aggregations.IR{}
	}
	v := new(lookupView)
	if err := v.parse(val); err != nil {
		w.t.Fatal(err)
	}
	ir, _, _, err := v.read(f.ID, f.Window, T)
	if err != nil {
		w.t.Fatal(err)
	}
	return ir
}

// request returns a random key list and feature list.
func (w *answerCacheWorld) request() (keyList, refs []string) {
	for range 1 + w.rng.IntN(3) {
		keyList = append(keyList, w.keys[w.rng.IntN(len(w.keys))])
	}
	if w.focus != "" {
		keyList = append(keyList, w.focus)
	}
	if w.rng.IntN(3) == 0 {
		return keyList, w.names
	}
	for range 1 + w.rng.IntN(len(w.names)) {
		refs = append(refs, w.names[w.rng.IntN(len(w.names))])
	}
	return keyList, refs
}

// fresh computes key's values of feats as of T from the Pebble view,
// without the view cache or the answer cache.
func (w *answerCacheWorld) fresh(key string, feats []pickedFeature, T int64) []value {
	val, found, err := w.s.o.Store.Get(nil, keys.View(nil, "user", key))
	if err != nil {
		w.t.Fatal(err)
	}
	v := new(lookupView)
	if found && len(val) > 0 {
		if err := v.parse(val); err != nil {
			w.t.Fatal(err)
		}
	}
	known, err := knownAt(v, T)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []value
	for _, f := range feats {
		fv, err := fold(f, v, T, known)
		if err != nil {
			w.t.Fatal(err)
		}
		out = append(out, fv)
	}
	return out
}

// check looks keys up through the service and compares every value with
// the fresh computation as of the same time.
func (w *answerCacheWorld) check(step int, keyList, refs []string) {
	T := w.clock.Load()
	a, err := w.s.lookup(w.s.entities["user"], keyList, refs)
	if err != nil {
		w.t.Fatal(err)
	}
	defer a.release()
	n := len(a.feats)
	for i, key := range keyList {
		want := w.fresh(key, a.feats, T)
		for j := range a.feats {
			if got := a.vals[i*n+j]; !reflect.DeepEqual(got, want[j]) {
				w.t.Fatalf("step %d, T %d: %s %s = %+v, computed from the view: %+v", step, T, key, a.feats[j].def.ID, got, want[j])
			}
		}
	}
}

// Every answer, from the answer cache or not, equals the one computed from
// the Pebble view as of the same time, across applies, clock moves onto
// and around every boundary the cache's validity depends on, and requests
// of different feature sets for the same entities.
func TestAnswerCacheIsExact(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			w := newAnswerCacheWorld(t, seed)
			for step := range 1500 {
				switch w.rng.IntN(4) {
				case 0:
					w.apply()
				case 1:
					w.tick()
				}
				keyList, refs := w.request()
				w.check(step, keyList, refs)
				w.check(step, keyList, refs) // likely a hit now
				if w.rng.IntN(2) == 0 {      // 1 ms later: across a boundary the tick reached
					w.clock.Add(1)
					w.check(step, keyList, refs)
				}
				if w.rng.IntN(3) == 0 { // the same entities, other features
					_, refs2 := w.request()
					w.check(step, keyList, refs2)
				}
			}
			if testutil.ToFloat64(w.s.answerHits) < 1000 {
				t.Fatalf("only %v keys were answered from the answer cache: the test did not exercise it", testutil.ToFloat64(w.s.answerHits))
			}
		})
	}
}

// Lookups running concurrently with the consumer's commits (run it with
// -race) answer from a view state at least as new as the last commit
// finished before the lookup started: each answer equals the fresh answer
// of one of the states committed while it ran.
func TestAnswerCacheUnderConcurrentApplies(t *testing.T) {
	w := newAnswerCacheWorld(t, 7)
	refs := w.names
	feats := func() []pickedFeature {
		a := answerPool.Get().(*lookupAnswer)
		defer a.release()
		if err := w.s.resolve(a, w.s.entities["user"], refs); err != nil {
			t.Fatal(err)
		}
		return append([]pickedFeature(nil), a.feats...)
	}()
	for phase := range 4 {
		w.tick()
		T := w.clock.Load()
		// states[k] holds every key's fresh answer after k commits of this
		// phase; committed is k once states[k] is set.
		var mu sync.Mutex
		states := [][][]value{w.freshAll(feats, T)}
		var committed atomic.Int64
		var done atomic.Bool // no more commits
		stop := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), uint64(phase)))
				for {
					select {
					case <-stop:
						return
					default:
					}
					k := rng.IntN(len(w.keys))
					c0 := committed.Load()
					a, err := w.s.lookup(w.s.entities["user"], []string{w.keys[k]}, refs)
					if err != nil {
						errs <- err
						return
					}
					// The lookup read a state from c0 on, at most one
					// commit past c1 (whose fresh answers may not be
					// recorded yet: wait for them).
					c1 := committed.Load()
					for committed.Load() <= c1 && !done.Load() {
						time.Sleep(100 * time.Microsecond)
					}
					mu.Lock()
					ok := false
					for c := c0; c <= c1+1 && int(c) < len(states); c++ {
						if reflect.DeepEqual(a.vals, states[c][k]) {
							ok = true
							break
						}
					}
					mu.Unlock()
					if !ok {
						errs <- fmt.Errorf("phase %d: %s answered %+v, matching no view state committed from %d to %d", phase, w.keys[k], a.vals, c0, c1+1)
					}
					a.release()
					if !ok {
						return
					}
				}
			}()
		}
		for range 60 {
			w.apply()
			st := w.freshAll(feats, T)
			mu.Lock()
			states = append(states, st)
			mu.Unlock()
			committed.Add(1)
			time.Sleep(time.Millisecond)
		}
		done.Store(true)
		close(stop)
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
	}
}

// freshAll is fresh for every key of the world.
func (w *answerCacheWorld) freshAll(feats []pickedFeature, T int64) [][]value {
	out := make([][]value, len(w.keys))
	for k, key := range w.keys {
		out[k] = w.fresh(key, feats, T)
	}
	return out
}

// The memory the answer cache documents per value, and no pointer in it
// for the garbage collector to trace.
func TestCachedAnswerSize(t *testing.T) {
	if n := unsafe.Sizeof(cachedAnswer{}); n != 40 {
		t.Fatalf("cachedAnswer is %d bytes, documented as 40", n)
	}
	for i := range reflect.TypeFor[cachedAnswer]().NumField() {
		switch k := reflect.TypeFor[cachedAnswer]().Field(i).Type.Kind(); k {
		case reflect.Int64, reflect.Float64, reflect.Int32, reflect.Uint8, reflect.Bool:
		default:
			t.Errorf("cachedAnswer field %d is a %s: keep it pointer-free", i, k)
		}
	}
}

// Every field of value is either kept by a cachedAnswer (or rebuilt from
// the feature's definition) or checked by scalarValue: a new kind of value
// must be excluded from the answer cache, or cached, deliberately.
func TestScalarValueCoversEveryField(t *testing.T) {
	kept := map[string]bool{"typ": true, "v": true, "hasV": true, "status": true, "version": true, "updated": true}
	checked := map[string]value{"list": {list: []float64{}}, "str": {str: "x"}, "strs": {strs: []string{}},
		"top": {top: []TopValue{}}, "topErr": {topErr: 1}, "buckets": {buckets: []bucketEntry{}}}
	for i := range reflect.TypeFor[value]().NumField() {
		name := reflect.TypeFor[value]().Field(i).Name
		if kept[name] {
			continue
		}
		v, ok := checked[name]
		if !ok {
			t.Errorf("value.%s is neither kept by the answer cache nor checked by scalarValue: see answercache.go", name)
			continue
		}
		if scalarValue(&v) {
			t.Errorf("scalarValue accepts a value with %s set", name)
		}
	}
}

// Features the answer cache leaves out (bucketed ones here) are answered
// the same on a repeated lookup, when the entity's cached view holds
// answers. (A key is answered from the cache only when every feature asked
// is: a request with a bucketed feature folds every time.)
func TestAnswerCacheLeavesBucketsOut(t *testing.T) {
	fx := bucketFixture(t)
	const keyList = `"keys":["u1","u2","42","nobody"]`
	mixed := `{"entity":"user",` + keyList + `,"features":["txn_count_7d","amount_by_currency_7d","count_by_currency","last_by_currency_1h"]}`
	first := fx.do(t, "POST", "/v1/lookup", mixed)
	if first.Code != 200 {
		t.Fatalf("lookup: %d %s", first.Code, first.Body)
	}
	for range 2 {
		fx.do(t, "POST", "/v1/lookup", `{"entity":"user",`+keyList+`,"features":["txn_count_7d"]}`)
	}
	if testutil.ToFloat64(fx.svc.answerHits) == 0 {
		t.Fatal("txn_count_7d was never answered from the answer cache")
	}
	for range 2 {
		if again := fx.do(t, "POST", "/v1/lookup", mixed); again.Body.String() != first.Body.String() {
			t.Fatalf("a repeated lookup answered\n%s\nthe first\n%s", again.Body, first.Body)
		}
	}
}
