package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/featurepipe/featurepipe/internal/keys"
)

var t0 = time.Date(2026, 11, 25, 13, 15, 0, 0, time.UTC)

type kv struct{ k, v []byte }

// genPartition returns n sorted state pairs of one source partition with
// random values (seeded, so a failure is reproducible).
func genPartition(topic string, p int32, n int, seed uint64) []kv {
	r := rand.New(rand.NewPCG(seed, uint64(p)))
	out := make([]kv, n)
	for i := range out {
		v := make([]byte, 1+r.IntN(200))
		for j := range v {
			v[j] = byte(r.Uint32())
		}
		out[i] = kv{keys.State(nil, topic, p, fmt.Sprintf("user-%07d", i)), v}
	}
	return out
}

func iterOf(pairs []kv) func(yield func(k, v []byte) bool) error {
	return func(yield func(k, v []byte) bool) error {
		for _, p := range pairs {
			if !yield(p.k, p.v) {
				return nil
			}
		}
		return nil
	}
}

func part(topic string, p int32, next, maxTS int64, pairs []kv) PartitionData {
	return PartitionData{Topic: topic, Partition: p, NextOffset: next, MaxEventTime: maxTS, Iter: iterOf(pairs)}
}

// writeSnap writes a snapshot of the given partitions (100 keys each)
// created at t0+minute minutes.
func writeSnap(t *testing.T, s *Store, worker string, minute int, tps ...TopicPartition) *Manifest {
	t.Helper()
	var parts []PartitionData
	for _, tp := range tps {
		parts = append(parts, part(tp.Topic, tp.Partition, int64(minute*100), int64(minute), genPartition(tp.Topic, tp.Partition, 100, uint64(minute))))
	}
	m, err := s.Write(context.Background(), Manifest{Worker: worker, CreatedAt: t0.Add(time.Duration(minute) * time.Minute)}, parts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func readAll(t *testing.T, s *Store, m *Manifest, file string) []kv {
	t.Helper()
	var got []kv
	err := s.Read(context.Background(), m, file, func(k, v []byte) error {
		got = append(got, kv{bytes.Clone(k), bytes.Clone(v)})
		return nil
	})
	if err != nil {
		t.Fatalf("Read %s: %v", file, err)
	}
	return got
}

func equalPairs(a, b []kv) bool {
	return slices.EqualFunc(a, b, func(x, y kv) bool { return bytes.Equal(x.k, y.k) && bytes.Equal(x.v, y.v) })
}

func ids(ms []*Manifest) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestWriteReadRoundTrip(t *testing.T) {
	ctx := context.Background()
	b := newDir(t)
	s := NewStore(b, 0)
	data := map[TopicPartition][]kv{
		{"orders", 0}:   genPartition("orders", 0, 5000, 1),
		{"orders", 7}:   genPartition("orders", 7, 3000, 2),
		{"payments", 2}: genPartition("payments", 2, 4000, 3),
	}
	var parts []PartitionData
	for tp, pairs := range data {
		parts = append(parts, part(tp.Topic, tp.Partition, int64(len(pairs))+10, 1_700_000_000_000+int64(tp.Partition), pairs))
	}
	in := Manifest{
		Worker:     "worker-a",
		CreatedAt:  t0,
		Features:   []FeatureRef{{ID: "spend_7d@2", Hash: "abc"}},
		FeatureLog: []LogPartition{{Partition: 0, Offset: 42}, {Partition: 1, Offset: 7}},
	}
	m, err := s.Write(ctx, in, parts)
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != "" || in.Files != nil {
		t.Errorf("Write modified the caller's manifest: %+v", in)
	}
	if !strings.HasPrefix(m.ID, "20261125T131500.000Z-worker-a-") {
		t.Errorf("ID = %q, want time-worker-random", m.ID)
	}

	ms, problems, err := s.List(ctx)
	if err != nil || len(problems) != 0 || len(ms) != 1 {
		t.Fatalf("List = %v, %v, %v; want the one snapshot", ids(ms), problems, err)
	}
	got := ms[0]
	if !got.CreatedAt.Equal(t0) || got.Worker != "worker-a" || !slices.Equal(got.Features, in.Features) || !slices.Equal(got.FeatureLog, in.FeatureLog) {
		t.Errorf("listed manifest lost fields: %+v", got)
	}
	if len(got.Sources) != len(data) || len(got.Files) != len(data) {
		t.Fatalf("manifest has %d sources and %d files, want %d each", len(got.Sources), len(got.Files), len(data))
	}
	if err := s.Verify(ctx, got); err != nil {
		t.Fatalf("Verify of a fresh snapshot: %v", err)
	}
	for tp, pairs := range data {
		sp, ok := got.Source(tp)
		if !ok {
			t.Fatalf("no source %s in manifest", tp)
		}
		if sp.NextOffset != int64(len(pairs))+10 || sp.MaxEventTime != 1_700_000_000_000+int64(tp.Partition) {
			t.Errorf("source %s = %+v, offsets lost", tp, sp)
		}
		if sp.File != fmt.Sprintf("%s-%d.sst", tp.Topic, tp.Partition) {
			t.Errorf("source %s file = %q", tp, sp.File)
		}
		if back := readAll(t, s, got, sp.File); !equalPairs(back, pairs) {
			t.Errorf("partition %s: read back %d pairs, wrote %d, or they differ", tp, len(back), len(pairs))
		}
	}
	// The manifest is human-readable JSON with a format version.
	raw, err := get(t, b, m.Object(ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"format": 1`)) || !bytes.Contains(raw, []byte("\n  \"id\": ")) {
		t.Errorf("manifest is not indented JSON with a format version:\n%s", raw)
	}
}

func TestWriteRejects(t *testing.T) {
	ctx := context.Background()
	pairs := genPartition("t", 0, 10, 1)
	unsorted := slices.Clone(pairs)
	unsorted[3], unsorted[4] = unsorted[4], unsorted[3]
	dup := slices.Clone(pairs)
	dup[5] = dup[4]
	iterErr := errors.New("pebble iterator failed")
	tests := []struct {
		name  string
		m     Manifest
		parts []PartitionData
		want  error // nil: any error
	}{
		{"keys out of order", Manifest{}, []PartitionData{part("t", 0, 1, 1, unsorted)}, ErrUnsorted},
		{"duplicate key", Manifest{}, []PartitionData{part("t", 0, 1, 1, dup)}, ErrUnsorted},
		{"iterator error", Manifest{}, []PartitionData{{Topic: "t", Iter: func(func(k, v []byte) bool) error { return iterErr }}}, iterErr},
		{"partition given twice", Manifest{}, []PartitionData{part("t", 0, 1, 1, pairs), part("t", 0, 1, 1, pairs)}, nil},
		{"topic unusable as a file name", Manifest{}, []PartitionData{part("a/b", 0, 1, 1, pairs)}, nil},
		{"negative partition", Manifest{}, []PartitionData{part("t", -1, 1, 1, pairs)}, nil},
		{"nil iterator", Manifest{}, []PartitionData{{Topic: "t"}}, nil},
		{"id with a slash", Manifest{ID: "a/b"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newDir(t)
			s := NewStore(b, 0)
			_, err := s.Write(ctx, tt.m, tt.parts)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Write = %v, want error %v", err, tt.want)
			}
			if names, _ := b.List(ctx, ""); len(names) != 0 {
				t.Errorf("failed Write left objects: %v", names)
			}
		})
	}

	t.Run("existing id", func(t *testing.T) {
		s := NewStore(newDir(t), 0)
		m := writeSnap(t, s, "w", 0, TopicPartition{"t", 0})
		if _, err := s.Write(ctx, Manifest{ID: m.ID}, nil); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("second Write with id %s = %v, want fs.ErrExist", m.ID, err)
		}
		if err := s.Verify(ctx, m); err != nil {
			t.Fatalf("the first snapshot was damaged: %v", err)
		}
	})
}

// faultyBackend wraps a Backend, recording Puts and failing those whose name
// matches failPut.
type faultyBackend struct {
	Backend
	mu      sync.Mutex
	puts    []string
	failPut func(name string) bool
}

var errInjected = errors.New("injected backend failure")

func (f *faultyBackend) Put(ctx context.Context, name string, r io.Reader) error {
	f.mu.Lock()
	f.puts = append(f.puts, name)
	fail := f.failPut != nil && f.failPut(name)
	f.mu.Unlock()
	if fail {
		return errInjected
	}
	return f.Backend.Put(ctx, name, r)
}

func TestManifestWrittenLast(t *testing.T) {
	ctx := context.Background()
	tps := []TopicPartition{{"a", 0}, {"a", 1}, {"b", 0}}

	t.Run("the manifest is the last Put", func(t *testing.T) {
		fb := &faultyBackend{Backend: newDir(t)}
		writeSnap(t, NewStore(fb, 0), "w", 0, tps...)
		if len(fb.puts) != len(tps)+1 || !strings.HasSuffix(fb.puts[len(fb.puts)-1], "/"+ManifestName) {
			t.Fatalf("puts = %v, want %d SSTs then the manifest", fb.puts, len(tps))
		}
	})

	tests := []struct {
		name    string
		failPut func(string) bool
	}{
		{"failed manifest put leaves no snapshot", func(n string) bool { return strings.HasSuffix(n, ManifestName) }},
		{"failed sst put leaves no snapshot", func(n string) bool { return strings.HasSuffix(n, "a-1.sst") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := newDir(t)
			fb := &faultyBackend{Backend: dir, failPut: tt.failPut}
			s := NewStore(fb, 0)
			old := writeSnap(t, NewStore(dir, 0), "w", 0, tps...)
			_, err := s.Write(ctx, Manifest{Worker: "w", CreatedAt: t0.Add(time.Hour)}, []PartitionData{
				part("a", 0, 1, 1, genPartition("a", 0, 50, 1)),
				part("a", 1, 1, 1, genPartition("a", 1, 50, 1)),
				part("b", 0, 1, 1, genPartition("b", 0, 50, 1)),
			})
			if !errors.Is(err, errInjected) {
				t.Fatalf("Write = %v, want the injected failure", err)
			}
			ms, problems, err := s.List(ctx)
			if err != nil || len(problems) != 0 || !slices.Equal(ids(ms), []string{old.ID}) {
				t.Fatalf("List = %v, %v, %v; want only the earlier snapshot", ids(ms), problems, err)
			}
			got, _, err := s.Newest(ctx, tps, nil)
			if err != nil || got[tps[0]].Manifest.ID != old.ID {
				t.Fatalf("Newest = %v, %v; want the earlier snapshot", got, err)
			}
			// The failed Write cleaned up what it had uploaded.
			if names, _ := dir.List(ctx, ""); len(names) != len(tps)+1 {
				t.Errorf("objects after failed Write: %v", names)
			}
		})
	}

	t.Run("a directory without manifest is ignored", func(t *testing.T) {
		dir := newDir(t)
		s := NewStore(dir, 0)
		m := writeSnap(t, s, "w", 0, tps...)
		// A Write in progress (or crashed): SSTs, no manifest.
		orphan := NewID("other", t0.Add(time.Hour))
		if err := dir.Put(ctx, orphan+"/a-0.sst", strings.NewReader("partial")); err != nil {
			t.Fatal(err)
		}
		ms, problems, err := s.List(ctx)
		if err != nil || len(problems) != 0 || !slices.Equal(ids(ms), []string{m.ID}) {
			t.Fatalf("List = %v, %v, %v; want only %s and no problem", ids(ms), problems, err, m.ID)
		}
	})
}

// damage changes the stored object name.
type damage func(t *testing.T, b *DirBackend, name string)

func flipByte(t *testing.T, b *DirBackend, name string) {
	p := filepath.Join(b.Dir(), filepath.FromSlash(name))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func removeFile(t *testing.T, b *DirBackend, name string) {
	if err := os.Remove(filepath.Join(b.Dir(), filepath.FromSlash(name))); err != nil {
		t.Fatal(err)
	}
}

func truncateFile(t *testing.T, b *DirBackend, name string) {
	if err := os.Truncate(filepath.Join(b.Dir(), filepath.FromSlash(name)), 100); err != nil {
		t.Fatal(err)
	}
}

func appendByte(t *testing.T, b *DirBackend, name string) {
	f, err := os.OpenFile(filepath.Join(b.Dir(), filepath.FromSlash(name)), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptSnapshotIsSkipped(t *testing.T) {
	ctx := context.Background()
	a0, a1 := TopicPartition{"a", 0}, TopicPartition{"a", 1}
	tests := []struct {
		name    string
		damage  damage
		notExit bool // the error also matches ErrNotExist
	}{
		{"a flipped byte fails the checksum", flipByte, false},
		{"a missing file is corrupt", removeFile, true},
		{"a truncated file fails the size", truncateFile, false},
		{"a longer file fails the size", appendByte, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newDir(t)
			s := NewStore(b, 0)
			older := writeSnap(t, s, "w", 0, a0, a1)
			newer := writeSnap(t, s, "w", 1, a0, a1)
			bad, _ := newer.Source(a1)
			tt.damage(t, b, newer.Object(bad.File))

			err := s.Verify(ctx, newer)
			var ce *CorruptError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.File != bad.File || ce.ID != newer.ID {
				t.Fatalf("Verify = %v, want ErrCorrupt naming %s", err, bad.File)
			}
			if errors.Is(err, ErrNotExist) != tt.notExit {
				t.Errorf("Verify = %v: errors.Is(ErrNotExist) = %v, want %v", err, !tt.notExit, tt.notExit)
			}
			if err := s.Verify(ctx, older); err != nil {
				t.Fatalf("Verify of the intact older snapshot: %v", err)
			}
			if err := s.Read(ctx, newer, bad.File, func(k, v []byte) error {
				t.Fatal("Read called fn on a corrupt file")
				return nil
			}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Read of the corrupt file = %v, want ErrCorrupt", err)
			}
			dst := filepath.Join(t.TempDir(), "x.sst")
			if err := s.Fetch(ctx, newer, bad.File, dst); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Fetch of the corrupt file = %v, want ErrCorrupt", err)
			}
			if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Fetch of a corrupt file left %s: %v", dst, err)
			}
			if left, _ := os.ReadDir(filepath.Dir(dst)); len(left) != 0 {
				t.Fatalf("Fetch of a corrupt file left temporary files: %v", left)
			}

			got, problems, err := s.Newest(ctx, []TopicPartition{a0, a1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got[a0].Manifest.ID != newer.ID {
				t.Errorf("a/0 (intact in the newer snapshot) chose %s, want %s", got[a0].Manifest.ID, newer.ID)
			}
			if got[a1].Manifest.ID != older.ID || got[a1].Source.NextOffset != 0 {
				t.Errorf("a/1 chose %+v, want the older snapshot %s", got[a1], older.ID)
			}
			if len(problems) != 1 || problems[0].ID != newer.ID || problems[0].File != bad.File || !errors.Is(problems[0], ErrCorrupt) {
				t.Fatalf("problems = %v, want one naming %s in %s", problems, bad.File, newer.ID)
			}
			if !strings.Contains(problems[0].Error(), bad.File) {
				t.Errorf("problem text %q does not name the file", problems[0].Error())
			}
		})
	}
}

func TestGarbageManifestIsSkipped(t *testing.T) {
	ctx := context.Background()
	tp := TopicPartition{"a", 0}
	tests := []struct {
		name   string
		edit   func(m map[string]any) // nil: replace the manifest by garbage
		raw    string
		reason string // expected in the problem
	}{
		{"not json", nil, "{\"format\": 1, \"id\": ", "parse"},
		{"empty", nil, "", "parse"},
		{"unknown format version", func(m map[string]any) { m["format"] = 2 }, "", "format version 2"},
		{"no format version", func(m map[string]any) { delete(m, "format") }, "", "format version 0"},
		{"id differs from its location", func(m map[string]any) { m["id"] = "20200101T000000.000Z-x-1" }, "", "does not match"},
		{"source file not listed", func(m map[string]any) { m["files"] = []any{} }, "", "not listed"},
		{"malformed checksum", func(m map[string]any) {
			m["files"].([]any)[0].(map[string]any)["sha256"] = "xyz"
		}, "", "malformed sha256"},
		{"file name escaping the snapshot", func(m map[string]any) {
			m["files"].([]any)[0].(map[string]any)["name"] = "../other/a-0.sst"
		}, "", "invalid file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newDir(t)
			s := NewStore(b, 0)
			older := writeSnap(t, s, "w", 0, tp)
			newer := writeSnap(t, s, "w", 1, tp)
			obj := newer.Object(ManifestName)
			raw := []byte(tt.raw)
			if tt.edit != nil {
				orig, err := get(t, b, obj)
				if err != nil {
					t.Fatal(err)
				}
				var m map[string]any
				if err := json.Unmarshal(orig, &m); err != nil {
					t.Fatal(err)
				}
				tt.edit(m)
				if raw, err = json.Marshal(m); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Put(ctx, obj, bytes.NewReader(raw)); err != nil {
				t.Fatal(err)
			}

			ms, problems, err := s.List(ctx)
			if err != nil || !slices.Equal(ids(ms), []string{older.ID}) {
				t.Fatalf("List = %v, %v; want only %s", ids(ms), err, older.ID)
			}
			if len(problems) != 1 || problems[0].ID != newer.ID || problems[0].File != ManifestName ||
				!errors.Is(problems[0], ErrCorrupt) || !strings.Contains(problems[0].Error(), tt.reason) {
				t.Fatalf("problems = %v, want one for %s/%s saying %q", problems, newer.ID, ManifestName, tt.reason)
			}
			got, problems, err := s.Newest(ctx, []TopicPartition{tp}, nil)
			if err != nil || got[tp].Manifest.ID != older.ID || len(problems) != 1 {
				t.Fatalf("Newest = %v, %v, %v; want %s and the problem", got, problems, err, older.ID)
			}
		})
	}
}

func TestNewest(t *testing.T) {
	ctx := context.Background()
	a0, a1, b0 := TopicPartition{"a", 0}, TopicPartition{"a", 1}, TopicPartition{"b", 0}
	s := NewStore(newDir(t), 0)
	m0 := writeSnap(t, s, "w1", 0, a0, a1) // MaxEventTime 0
	m1 := writeSnap(t, s, "w2", 1, b0)     // MaxEventTime 1
	m2 := writeSnap(t, s, "w1", 2, a0)     // MaxEventTime 2
	tests := []struct {
		name   string
		want   []TopicPartition
		accept func(*Manifest, SourcePartition) bool
		expect map[TopicPartition]string // partition -> manifest id; absent: no choice
	}{
		{"each partition gets its newest snapshot", []TopicPartition{a0, a1, b0}, nil,
			map[TopicPartition]string{a0: m2.ID, a1: m0.ID, b0: m1.ID}},
		{"accept filters by event time (backfill)", []TopicPartition{a0, b0},
			func(_ *Manifest, sp SourcePartition) bool { return sp.MaxEventTime < 2 },
			map[TopicPartition]string{a0: m0.ID, b0: m1.ID}},
		{"nothing acceptable leaves the partition out", []TopicPartition{a0, b0},
			func(_ *Manifest, sp SourcePartition) bool { return sp.MaxEventTime < 0 },
			map[TopicPartition]string{}},
		{"a partition never snapshotted is absent", []TopicPartition{{"c", 0}, a1}, nil,
			map[TopicPartition]string{a1: m0.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems, err := s.Newest(ctx, tt.want, tt.accept)
			if err != nil || len(problems) != 0 {
				t.Fatalf("Newest: %v, %v", problems, err)
			}
			if len(got) != len(tt.expect) {
				t.Errorf("chose %d partitions, want %d: %v", len(got), len(tt.expect), got)
			}
			for tp, id := range tt.expect {
				c := got[tp]
				if c.Manifest == nil || c.Manifest.ID != id || c.Source.TopicPartition() != tp {
					t.Errorf("%s: chose %+v, want snapshot %s", tp, c, id)
				}
			}
		})
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	a0, b0 := TopicPartition{"a", 0}, TopicPartition{"b", 0}

	t.Run("keeps the newest N and removes the files of the rest", func(t *testing.T) {
		b := newDir(t)
		s := NewStore(b, 3)
		var all []*Manifest
		for i := range 6 {
			all = append(all, writeSnap(t, s, "w", i, a0, b0))
		}
		deleted, err := s.Prune(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{all[0].ID, all[1].ID, all[2].ID}; !slices.Equal(deleted, want) {
			t.Errorf("deleted %v, want the 3 oldest %v", deleted, want)
		}
		ms, _, _ := s.List(ctx)
		if want := []string{all[5].ID, all[4].ID, all[3].ID}; !slices.Equal(ids(ms), want) {
			t.Errorf("kept %v, want the 3 newest %v", ids(ms), want)
		}
		for _, m := range all[:3] {
			if names, _ := b.List(ctx, m.ID+"/"); len(names) != 0 {
				t.Errorf("pruned snapshot %s left %v", m.ID, names)
			}
			if _, err := os.Stat(filepath.Join(b.Dir(), m.ID)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("pruned snapshot directory %s remains", m.ID)
			}
		}
		for _, m := range ms {
			if err := s.Verify(ctx, m); err != nil {
				t.Errorf("kept snapshot damaged by Prune: %v", err)
			}
		}
		if again, err := s.Prune(ctx); err != nil || len(again) != 0 {
			t.Errorf("second Prune = %v, %v; want nothing to do", again, err)
		}
	})

	t.Run("default retention is 5", func(t *testing.T) {
		s := NewStore(newDir(t), 0)
		for i := range 7 {
			writeSnap(t, s, "w", i, a0)
		}
		deleted, err := s.Prune(ctx)
		ms, _, _ := s.List(ctx)
		if err != nil || len(deleted) != 2 || len(ms) != DefaultRetain {
			t.Fatalf("Prune deleted %v (%v), %d left; want 2 deleted, 5 left", deleted, err, len(ms))
		}
	})

	t.Run("a partition keeps its snapshots however often others are snapshotted", func(t *testing.T) {
		s := NewStore(newDir(t), 2)
		onlyB := writeSnap(t, s, "w2", 0, b0)
		var as []*Manifest
		for i := 1; i <= 4; i++ {
			as = append(as, writeSnap(t, s, "w1", i, a0))
		}
		deleted, err := s.Prune(ctx)
		if err != nil || !slices.Equal(deleted, []string{as[0].ID, as[1].ID}) {
			t.Fatalf("deleted %v, %v; want the two oldest of a/0", deleted, err)
		}
		got, _, _ := s.Newest(ctx, []TopicPartition{b0}, nil)
		if got[b0].Manifest == nil || got[b0].Manifest.ID != onlyB.ID {
			t.Fatalf("b/0 lost its only snapshot")
		}
	})

	t.Run("garbage is deleted only after the grace period", func(t *testing.T) {
		b := newDir(t)
		s := NewStore(b, 5)
		now := t0.Add(48 * time.Hour)
		s.now = func() time.Time { return now }
		kept := writeSnap(t, s, "w", 0, a0)
		oldOrphan := NewID("crashed", t0.Add(-time.Hour))      // 49h old, no manifest
		youngOrphan := NewID("writing", now.Add(-time.Minute)) // a Write in progress
		oldGarbled := NewID("garbled", t0.Add(-2*time.Hour))   // unparseable manifest
		foreign := "not-a-snapshot-id"                         // not ours: never touched
		for _, obj := range []string{oldOrphan + "/a-0.sst", youngOrphan + "/a-0.sst", oldGarbled + "/" + ManifestName, oldGarbled + "/a-0.sst", foreign + "/x"} {
			if err := b.Put(ctx, obj, strings.NewReader("x")); err != nil {
				t.Fatal(err)
			}
		}
		deleted, err := s.Prune(ctx)
		slices.Sort(deleted)
		want := []string{oldGarbled, oldOrphan}
		slices.Sort(want)
		if err != nil || !slices.Equal(deleted, want) {
			t.Fatalf("Prune = %v, %v; want %v", deleted, err, want)
		}
		names, _ := b.List(ctx, "")
		wantLeft := []string{kept.ID + "/" + ManifestName, kept.ID + "/a-0.sst", youngOrphan + "/a-0.sst", foreign + "/x"}
		slices.Sort(wantLeft)
		if !slices.Equal(names, wantLeft) {
			t.Fatalf("left %v, want %v", names, wantLeft)
		}
	})
}

func TestConcurrentWritersDoNotClash(t *testing.T) {
	ctx := context.Background()
	b := newDir(t)
	const writers, rounds = 2, 5
	type result struct {
		m     *Manifest
		pairs map[TopicPartition][]kv
	}
	results := make([][]result, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Go(func() {
			s := NewStore(b, 100) // each worker its own Store, one shared directory
			for r := range rounds {
				// Same creation time for both workers: ids must still differ.
				tp := TopicPartition{"orders", int32(w)}
				pairs := genPartition(tp.Topic, tp.Partition, 2000, uint64(r*10+w))
				m, err := s.Write(ctx, Manifest{Worker: fmt.Sprintf("worker-%d", w), CreatedAt: t0.Add(time.Duration(r) * time.Minute)},
					[]PartitionData{part(tp.Topic, tp.Partition, int64(r), int64(r), pairs)})
				if err != nil {
					errs <- err
					return
				}
				results[w] = append(results[w], result{m, map[TopicPartition][]kv{tp: pairs}})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := NewStore(b, 0)
	ms, problems, err := s.List(ctx)
	if err != nil || len(problems) != 0 || len(ms) != writers*rounds {
		t.Fatalf("List = %d manifests, %v, %v; want %d", len(ms), problems, err, writers*rounds)
	}
	for _, rs := range results {
		for _, r := range rs {
			for tp, pairs := range r.pairs {
				sp, _ := r.m.Source(tp)
				if got := readAll(t, s, r.m, sp.File); !equalPairs(got, pairs) {
					t.Errorf("snapshot %s: %s does not read back what its writer wrote", r.m.ID, tp)
				}
			}
		}
	}
}

func TestFetchedSSTIngestsIntoPebble(t *testing.T) {
	ctx := context.Background()
	s := NewStore(newDir(t), 0)
	tp := TopicPartition{"orders", 3}
	pairs := genPartition(tp.Topic, tp.Partition, 3000, 9)
	m, err := s.Write(ctx, Manifest{Worker: "w"}, []PartitionData{part(tp.Topic, tp.Partition, 3000, 1, pairs)})
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := m.Source(tp)

	dbDir := t.TempDir()
	db, err := pebble.Open(filepath.Join(dbDir, "db"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Unrelated existing state outside the partition's range survives.
	other := keys.State(nil, "orders", 4, "x")
	if err := db.Set(other, []byte("keep"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dbDir, "ingest.sst")
	if err := s.Fetch(ctx, m, sp.File, dst); err != nil {
		t.Fatal(err)
	}
	if err := db.Ingest(ctx, []string{dst}); err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	lower, upper := keys.StatePartition(tp.Topic, tp.Partition)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		t.Fatal(err)
	}
	var got []kv
	for ok := it.First(); ok; ok = it.Next() {
		got = append(got, kv{bytes.Clone(it.Key()), bytes.Clone(it.Value())})
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if !equalPairs(got, pairs) {
		t.Fatalf("ingested partition holds %d pairs, snapshot had %d, or they differ", len(got), len(pairs))
	}
	v, closer, err := db.Get(other)
	if err != nil || string(v) != "keep" {
		t.Fatalf("unrelated key after ingest: %q, %v", v, err)
	}
	closer.Close()
}

func TestReadStopsOnCallbackError(t *testing.T) {
	ctx := context.Background()
	s := NewStore(newDir(t), 0)
	tp := TopicPartition{"t", 0}
	m := writeSnap(t, s, "w", 0, tp)
	stop := errors.New("enough")
	calls := 0
	err := s.Read(ctx, m, "t-0.sst", func(k, v []byte) error {
		calls++
		if calls == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 10 {
		t.Fatalf("Read = %v after %d calls, want the callback's error after 10", err, calls)
	}
	if err := s.Read(ctx, m, "nope.sst", func(k, v []byte) error { return nil }); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Read of a file not in the manifest = %v, want ErrNotExist", err)
	}
}

func TestEmptyPartition(t *testing.T) {
	ctx := context.Background()
	s := NewStore(newDir(t), 0)
	m, err := s.Write(ctx, Manifest{Worker: "w"}, []PartitionData{part("t", 0, 0, 0, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, m, "t-0.sst"); len(got) != 0 {
		t.Fatalf("empty partition read back %d pairs", len(got))
	}
}

// BenchmarkWrite measures snapshotting one partition of 100k keys (~100 B
// values) to a DirBackend: SST build, upload with checksum, manifest.
func BenchmarkWrite(b *testing.B) {
	ctx := context.Background()
	pairs := genPartition("orders", 0, 100_000, 1)
	var bytesPerOp int64
	for _, p := range pairs {
		bytesPerOp += int64(len(p.k) + len(p.v))
	}
	dir, err := NewDirBackend(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s := NewStore(dir, 1)
	b.SetBytes(bytesPerOp)
	for b.Loop() {
		if _, err := s.Write(ctx, Manifest{Worker: "bench"}, []PartitionData{part("orders", 0, 1, 1, pairs)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRead measures loading the same partition back by iteration
// (download, verify, iterate).
func BenchmarkRead(b *testing.B) {
	ctx := context.Background()
	pairs := genPartition("orders", 0, 100_000, 1)
	var bytesPerOp int64
	for _, p := range pairs {
		bytesPerOp += int64(len(p.k) + len(p.v))
	}
	dir, err := NewDirBackend(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s := NewStore(dir, 1)
	m, err := s.Write(ctx, Manifest{Worker: "bench"}, []PartitionData{part("orders", 0, 1, 1, pairs)})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(bytesPerOp)
	for b.Loop() {
		n := 0
		if err := s.Read(ctx, m, "orders-0.sst", func(k, v []byte) error { n++; return nil }); err != nil || n != len(pairs) {
			b.Fatalf("read %d pairs, %v", n, err)
		}
	}
}

// A partition wanted twice is chosen once and its files verified once: a
// corrupt one is reported once.
func TestNewestWithDuplicatePartitions(t *testing.T) {
	ctx := context.Background()
	a0 := TopicPartition{"a", 0}
	b := newDir(t)
	s := NewStore(b, 0)
	older := writeSnap(t, s, "w", 0, a0)
	newer := writeSnap(t, s, "w", 1, a0)
	sp, _ := newer.Source(a0)
	flipByte(t, b, newer.Object(sp.File))
	got, problems, err := s.Newest(ctx, []TopicPartition{a0, a0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[a0].Manifest.ID != older.ID {
		t.Errorf("chose %v, want a/0 from %s", got, older.ID)
	}
	if len(problems) != 1 {
		t.Errorf("problems %v, want the corrupt file once", problems)
	}
}

// Read's local copy is scratch: it is gone when Read returns, whether the
// file was intact or corrupt.
func TestReadLeavesNoTemporaryFiles(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx := context.Background()
	a0, a1 := TopicPartition{"a", 0}, TopicPartition{"a", 1}
	b := newDir(t)
	s := NewStore(b, 0)
	m := writeSnap(t, s, "w", 0, a0, a1)
	good, _ := m.Source(a0)
	bad, _ := m.Source(a1)
	truncateFile(t, b, m.Object(bad.File))
	if got := readAll(t, s, m, good.File); len(got) != 100 {
		t.Errorf("read %d pairs, want 100", len(got))
	}
	if err := s.Read(ctx, m, bad.File, func(k, v []byte) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Read of the truncated file = %v, want ErrCorrupt", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("Read left %v in TMPDIR", left)
	}
}

func TestOpenReadsWhatReadReadsAndCleansUp(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where Open keeps its local copies
	b := newDir(t)
	s := NewStore(b, 0)
	a0, a1 := TopicPartition{"a", 0}, TopicPartition{"a", 1}
	m := writeSnap(t, s, "w", 0, a0, a1)
	for _, tp := range []TopicPartition{a0, a1} {
		src, _ := m.Source(tp)
		want := readAll(t, s, m, src.File)
		r, err := s.Open(ctx, m, src.File)
		if err != nil {
			t.Fatal(err)
		}
		var got []kv
		for r.Next() {
			v, err := r.Value()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, kv{bytes.Clone(r.Key()), bytes.Clone(v)})
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		if r.Next() {
			t.Fatal("Next after the end reports a pair")
		}
		if len(got) != 100 || !equalPairs(got, want) {
			t.Fatalf("%s: Open read %d pairs, Read %d; equal: %v", src.File, len(got), len(want), equalPairs(got, want))
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	bad, _ := m.Source(a1)
	flipByte(t, b, m.Object(bad.File))
	if r, err := s.Open(ctx, m, bad.File); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a corrupt file = %v, %v; want ErrCorrupt", r, err)
	}
	if _, err := s.Open(ctx, m, "nope.sst"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Open of a file not in the manifest = %v, want ErrNotExist", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("Open and Close left temporary files: %v", left)
	}
}

// OpenNewest chooses what Newest chooses, reports the same problems, and
// returns the chosen files open, in one read of each; once the readers are
// closed (and after a corrupt file) no local copy is left.
func TestOpenNewestOpensWhatNewestChooses(t *testing.T) {
	ctx := context.Background()
	a0, a1, b0 := TopicPartition{"a", 0}, TopicPartition{"a", 1}, TopicPartition{"b", 0}
	for name, damage := range map[string]damage{"flipped byte": flipByte, "missing file": removeFile, "truncated": truncateFile} {
		t.Run(name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			b := newDir(t)
			s := NewStore(b, 0)
			writeSnap(t, s, "w", 0, a0, a1)
			newer := writeSnap(t, s, "w", 1, a0, a1)
			writeSnap(t, s, "v", 2, b0)
			bad, _ := newer.Source(a1)
			damage(t, b, newer.Object(bad.File))
			want := []TopicPartition{a0, a1, b0, a0}
			chosen, wantProblems, err := s.Newest(ctx, want, nil)
			if err != nil {
				t.Fatal(err)
			}
			opened, problems, err := s.OpenNewest(ctx, want, nil)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(problems) != fmt.Sprint(wantProblems) || len(problems) != 1 {
				t.Errorf("problems = %v, want %v", problems, wantProblems)
			}
			if len(opened) != 3 || len(chosen) != 3 {
				t.Fatalf("opened %d partitions, Newest chose %d; want 3", len(opened), len(chosen))
			}
			for tp, c := range chosen {
				o := opened[tp]
				if o.Manifest.ID != c.Manifest.ID || o.Source != c.Source {
					t.Errorf("%v: opened %s %+v, Newest chose %s %+v", tp, o.Manifest.ID, o.Source, c.Manifest.ID, c.Source)
				}
				wantPairs := readAll(t, s, c.Manifest, c.Source.File)
				var got []kv
				for o.Reader.Next() {
					v, err := o.Reader.Value()
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, kv{bytes.Clone(o.Reader.Key()), bytes.Clone(v)})
				}
				if err := o.Reader.Err(); err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != fmt.Sprint(wantPairs) || len(got) != 100 {
					t.Errorf("%v: read %d pairs, not those of %s", tp, len(got), c.Source.File)
				}
				if err := o.Reader.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("local copies left: %v", left)
			}
		})
	}
}
