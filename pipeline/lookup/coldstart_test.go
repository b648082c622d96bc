package lookup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/entity"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/state"
)

// coldFeature is one feature of the synthetic worker state below.
type coldFeature struct {
	id     string
	w      aggregations.Window
	str    bool // events carry a string
	events int  // per entity and partition; 0: 3
}

// richColdFeatures covers every kind of IR the snapshot carries: plain
// sums and counts, sketches, lists and top-k with pending events, and the
// worker's first-seen marker (a series after the features).
func richColdFeatures(tb testing.TB) []coldFeature {
	win := func(size, hop string) aggregations.Window {
		w, err := aggregations.ParseWindow(size, hop)
		if err != nil {
			tb.Fatal(err)
		}
		return w
	}
	d30, life, h2 := win("30d", ""), win("lifetime", ""), win("2h", "10m")
	return []coldFeature{
		{id: "spend_30d@1", w: d30.For(aggregations.Sum, 0)},
		{id: "txn_count_life@1", w: life.For(aggregations.Count, 0)},
		{id: "avg_2h@3", w: h2.For(aggregations.Avg, 0), events: 9},
		{id: "distinct_30d@1", w: d30.For(aggregations.ApproxDistinct, 0), events: 40},
		{id: "p90_30d@1", w: d30.For(aggregations.ApproxPercentile, 0.9), events: 40},
		{id: "last3_2h@1", w: h2.For(aggregations.LastK, 0).WithK(3).WithStrings(), str: true, events: 7},
		{id: "top_merchants_2h@1", w: h2.For(aggregations.TopK, 0).WithK(2).WithStrings(), str: true, events: 7},
		{id: "first_seen", w: life.For(aggregations.Min, 0), events: 1},
	}
}

// benchColdFeatures are BenchmarkColdStart's: a 30-day sum and a lifetime
// count, plus the first-seen marker.
func benchColdFeatures(tb testing.TB) []coldFeature {
	return slices.Concat(richColdFeatures(tb)[:2], richColdFeatures(tb)[7:])
}

// writeColdSnapshot writes a snapshot of n entities "user-%07d" of entity
// type "user" from source topic "tx" with parts partitions, as workers
// would: entity i is in partition i%parts, and every fifth entity also in
// the next partition (two producers' partitioners), with other features
// in a different order there. It returns the inputs ingestSnapshots takes.
func writeColdSnapshot(tb testing.TB, dir string, n, parts int, features []coldFeature) (*snapshot.Store, *snapshot.Manifest) {
	tb.Helper()
	ctx := context.Background()
	b, err := snapshot.NewDirBackend(dir)
	if err != nil {
		tb.Fatal(err)
	}
	store := snapshot.NewStore(b, 0)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var data []snapshot.PartitionData
	for p := range parts {
		data = append(data, snapshot.PartitionData{Topic: "tx", Partition: int32(p), NextOffset: 1, MaxEventTime: now,
			Iter: func(yield func(key, value []byte) bool) error {
				rng := rand.New(rand.NewPCG(uint64(p), 1))
				series := make([]aggregations.Series, len(features))
				ids := make([]string, len(features))
				var k, v []byte
				for i := range n {
					if i%parts != p && (i%5 != 0 || (i+1)%parts != p) {
						continue
					}
					order := features[:len(features)-1] // the marker is last
					if i%parts != p {
						order = slices.Clone(order)
						slices.Reverse(order)
					}
					for j, f := range order {
						ids[j] = f.id
						series[j] = aggregations.Series{}
						events := f.events
						if events == 0 {
							events = 3
						}
						if events >= 40 && i%97 == 0 {
							events = 1500 // sketches past their sparse or exact forms
						}
						for e := range events {
							ev := aggregations.Event{TS: now - rng.Int64N(10*aggregations.Day), Seq: int64(e), Value: float64(rng.IntN(500)) / 4}
							if f.str {
								ev.Str = "m-" + strconv.Itoa(rng.IntN(4))
								ev.TS = now - rng.Int64N(3*aggregations.Hour)
							}
							series[j].Apply(f.w, ev, now-aggregations.Hour)
						}
					}
					last := features[len(features)-1]
					var seen aggregations.Series
					seen.Apply(last.w, aggregations.Event{TS: now - rng.Int64N(10*aggregations.Day), Value: 1}, now)
					k = keys.State(k[:0], "tx", int32(p), fmt.Sprintf("user-%07d", i))
					v = entity.AppendWith(v[:0], ids[:len(order)], series[:len(order)], last.id, &seen)
					if !yield(k, v) {
						return nil
					}
				}
				return nil
			}})
	}
	m, err := store.Write(ctx, snapshot.Manifest{Worker: "w", CreatedAt: time.UnixMilli(now)}, data)
	if err != nil {
		tb.Fatal(err)
	}
	return store, m
}

// coldInputs are the inputs of ingestSnapshots for every file of m, in
// manifest order, as entity type "user", open; the test closes them.
func coldInputs(tb testing.TB, snaps *snapshot.Store, m *snapshot.Manifest) map[string][]*snapshotInput {
	byEntity := map[string][]*snapshotInput{}
	for _, sp := range m.Sources {
		r, err := snaps.Open(context.Background(), m, sp.File)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { r.Close() })
		byEntity["user"] = append(byEntity["user"], &snapshotInput{choice: snapshot.Choice{Manifest: m, Source: sp}, updated: m.CreatedAt.UnixMilli(), r: r})
	}
	return byEntity
}

// referenceViews is the view every entity of byEntity gets, built as the
// first version of ingestSnapshots built it (one merge, one full decode and
// re-encode of every entity, in one goroutine): the reference the parallel
// ingestion must match byte for byte.
func referenceViews(tb testing.TB, byEntity map[string][]*snapshotInput) (ks, vs [][]byte) {
	tb.Helper()
	prefix := func(name string) []byte { return keys.View(nil, name, "") }
	names := make([]string, 0, len(byEntity))
	for name := range byEntity {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return bytes.Compare(prefix(a), prefix(b)) })
	var e entityView
	for _, name := range names {
		ins := byEntity[name]
		for _, in := range ins {
			if err := in.next(); err != nil {
				tb.Fatal(err)
			}
		}
		for {
			var least []byte
			for _, in := range ins {
				if in.ok && (least == nil || bytes.Compare(in.key, least) < 0) {
					least = in.key
				}
			}
			if least == nil {
				break
			}
			k := append(keys.View(nil, name, ""), least...)
			e.reset()
			for _, in := range ins {
				if !in.ok || !bytes.Equal(in.key, k[len(prefix(name)):]) {
					continue
				}
				v, err := in.r.Value()
				if err != nil {
					tb.Fatal(err)
				}
				if err := entity.Decode(v, func(id []byte) *aggregations.Series {
					i := e.index(string(id), in.choice.Source.Partition)
					if i < 0 {
						i = e.add(string(id), in.choice.Source.Partition)
					}
					e.updated[i] = in.updated
					return &e.series[i]
				}); err != nil {
					tb.Fatal(err)
				}
				if err := in.next(); err != nil {
					tb.Fatal(err)
				}
			}
			ks, vs = append(ks, k), append(vs, e.encode(nil))
		}
	}
	return ks, vs
}

// storeViews returns every view key and value in st, in key order.
func storeViews(tb testing.TB, st *state.Store) (ks, vs [][]byte) {
	tb.Helper()
	it, err := st.DB().NewIter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		ks, vs = append(ks, slices.Clone(it.Key())), append(vs, slices.Clone(it.Value()))
	}
	if err := it.Error(); err != nil {
		tb.Fatal(err)
	}
	return ks, vs
}

// TestColdStartViewsAreTheReferenceViews: the views ingestSnapshots writes
// from a snapshot of several partitions (entities in one or two of them,
// every kind of IR) are byte for byte those of the one-goroutine merge and
// re-encode it replaced, whatever the number of chunks the work is split
// into, and every entity is there once.
func TestColdStartViewsAreTheReferenceViews(t *testing.T) {
	const n = 8_000
	snaps, m := writeColdSnapshot(t, t.TempDir(), n, 3, richColdFeatures(t))
	wantK, wantV := referenceViews(t, coldInputs(t, snaps, m))
	if len(wantK) != n {
		t.Fatalf("the reference has %d views, want %d", len(wantK), n)
	}
	for _, chunk := range []int{0, 128 << 10} {
		t.Run(fmt.Sprintf("chunk %d bytes", chunk), func(t *testing.T) {
			st, err := OpenStore(t.TempDir(), state.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			s := &Service{o: Options{Store: st, Snapshots: snaps}, log: zap.NewNop()}
			got, err := s.ingestSnapshots(context.Background(), coldInputs(t, snaps, m), chunk)
			if err != nil || got != n {
				t.Fatalf("ingestSnapshots = %d, %v; want %d entities", got, err, n)
			}
			gotK, gotV := storeViews(t, st)
			if len(gotK) != len(wantK) {
				t.Fatalf("%d views, want %d", len(gotK), len(wantK))
			}
			for i := range wantK {
				if !bytes.Equal(gotK[i], wantK[i]) || !bytes.Equal(gotV[i], wantV[i]) {
					t.Fatalf("view %d: %q = %x, want %q = %x", i, gotK[i], gotV[i], wantK[i], wantV[i])
				}
			}
		})
	}
}

// BenchmarkColdStartIngest measures ingestSnapshots alone (no broker) on a
// snapshot of COLDSTART_ENTITIES entities (default 1,000,000) in 6
// partitions with BenchmarkColdStart's features: open (download, verify),
// merge, build the views, write and ingest them.
func BenchmarkColdStartIngest(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("COLDSTART_ENTITIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	snaps, m := writeColdSnapshot(b, filepath.Join(dir, "snapshots"), n, 6, benchColdFeatures(b))
	var snapBytes int64
	for _, f := range m.Files {
		snapBytes += f.Size
	}
	b.Logf("snapshot: %d files, %.1f MiB", len(m.Files), float64(snapBytes)/(1<<20))
	b.ResetTimer()
	for i := range b.N {
		st, err := OpenStore(filepath.Join(dir, fmt.Sprint("view", i)), state.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		s := &Service{o: Options{Store: st, Snapshots: snaps}, log: zap.NewNop()}
		t0 := time.Now()
		got, err := s.ingestSnapshots(context.Background(), coldInputs(b, snaps, m), 0)
		if err != nil || got != int64(n) {
			b.Fatalf("ingestSnapshots = %d, %v; want %d entities", got, err, n)
		}
		took := time.Since(t0)
		b.StopTimer()
		b.Logf("%d entities ingested in %s, view %.1f MiB", n, took.Round(time.Millisecond), float64(st.DB().Metrics().DiskSpaceUsage())/(1<<20))
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// A snapshot value that does not decode (its file's checksum is right: the
// worker wrote it so) fails the ingestion wherever its chunk is built:
// nothing is ingested, no table is left behind, and the caller replays the
// feature log instead.
func TestColdStartCorruptValueIngestsNothing(t *testing.T) {
	ctx := context.Background()
	b, err := snapshot.NewDirBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	snaps := snapshot.NewStore(b, 0)
	w := aggregations.Window{Size: aggregations.Day, Hop: aggregations.Hour}
	var good aggregations.Series
	good.Apply(w, aggregations.Event{TS: 1_700_000_000_000, Value: 1}, aggregations.NoClock)
	value := entity.Append(nil, []string{"f@1"}, []aggregations.Series{good})
	const n, bad = 20_000, 15_000
	m, err := snaps.Write(ctx, snapshot.Manifest{Worker: "w"}, []snapshot.PartitionData{{Topic: "tx", Partition: 0, NextOffset: 1,
		Iter: func(yield func(key, value []byte) bool) error {
			for i := range n {
				v := value
				if i == bad {
					v = append(slices.Clone(value[:len(value)-2]), 0xff, 0xff)
				}
				if !yield(keys.State(nil, "tx", 0, fmt.Sprintf("user-%07d", i)), v) {
					return nil
				}
			}
			return nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := OpenStore(dir, state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := &Service{o: Options{Store: st, Snapshots: snaps}, log: zap.NewNop()}
	got, err := s.ingestSnapshots(ctx, coldInputs(t, snaps, m), 16<<10)
	if !errors.Is(err, aggregations.ErrCorrupt) || got != 0 {
		t.Fatalf("ingestSnapshots = %d, %v; want an error wrapping ErrCorrupt", got, err)
	}
	if ks, _ := storeViews(t, st); len(ks) != 0 {
		t.Fatalf("%d keys in the store after a failed ingestion, first %q", len(ks), ks[0])
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range names {
		if strings.HasPrefix(e.Name(), "featurepipe-ingest-") {
			t.Errorf("%s left in the store's directory", e.Name())
		}
	}
}
