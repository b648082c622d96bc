package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// ingestPairs ingests n pairs k00000..: v<i>-<tag>, with values long enough
// to fill several of IngestSorted's runs.
func ingestPairs(s *Store, n int, tag string) (int64, error) {
	pad := strings.Repeat("x", 200)
	return s.IngestSorted(context.Background(), func(set func(k, v []byte) error) error {
		for i := range n {
			if err := set([]byte(fmt.Sprintf("k%05d", i)), []byte(fmt.Sprintf("v%d-%s-%s", i, tag, pad))); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestIngestSortedWritesEveryPairAndSurvivesReopen(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	_ = b.Set([]byte("k00003"), []byte("old"), nil)
	_ = b.Set([]byte("other"), []byte("kept"), nil)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	const n = 5000 // ~1 MiB: several runs of the sstable writer
	if got, err := ingestPairs(s, n, "a"); err != nil || got != n {
		t.Fatalf("IngestSorted = %d, %v; want %d pairs", got, err, n)
	}
	check := func(s *Store) {
		t.Helper()
		for i := range n {
			v, found, err := s.Get(nil, []byte(fmt.Sprintf("k%05d", i)))
			if err != nil || !found || !strings.HasPrefix(string(v), fmt.Sprintf("v%d-a-", i)) {
				t.Fatalf("k%05d = %.20q, %v, %v", i, v, found, err)
			}
		}
		if v, found, err := s.Get(nil, []byte("other")); err != nil || !found || string(v) != "kept" {
			t.Fatalf("a key outside the ingested ones = %q, %v, %v; want it kept", v, found, err)
		}
	}
	check(s) // k00003 replaced, "other" kept
	names, _ := fs.List("db")
	for _, name := range names {
		if strings.HasPrefix(name, ingestPrefix) {
			t.Errorf("%s left in the store's directory", name)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open("db", Options{FS: fs}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s)
}

func TestIngestSortedIsAllOrNothing(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	boom := errors.New("boom")
	for name, fill := range map[string]func(set func(k, v []byte) error) error{
		"fill fails after some pairs": func(set func(k, v []byte) error) error {
			for i := range 3000 {
				if err := set([]byte(fmt.Sprintf("k%05d", i)), []byte(strings.Repeat("v", 300))); err != nil {
					return err
				}
			}
			return boom
		},
		"keys out of order": func(set func(k, v []byte) error) error {
			if err := set([]byte("k00002"), []byte("v")); err != nil {
				return err
			}
			return set([]byte("k00001"), []byte("v"))
		},
		"a key repeated": func(set func(k, v []byte) error) error {
			if err := set([]byte("k00001"), []byte("v")); err != nil {
				return err
			}
			return set([]byte("k00001"), []byte("w"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			n, err := s.IngestSorted(context.Background(), fill)
			if err == nil || n != 0 {
				t.Fatalf("IngestSorted = %d, %v; want an error and nothing ingested", n, err)
			}
			if name == "fill fails after some pairs" && !errors.Is(err, boom) {
				t.Fatalf("err = %v, want fill's error", err)
			}
			for _, k := range []string{"k00000", "k00001", "k00002"} {
				if _, found, _ := s.Get(nil, []byte(k)); found {
					t.Fatalf("%s visible after a failed ingest", k)
				}
			}
		})
	}
}

// writeTable writes keys k<from>..k<to-1> (value v<i>-<tag>) to a new table.
func writeTable(t *testing.T, s *Store, o IngestTableOptions, from, to int, tag string) *IngestTable {
	t.Helper()
	tb, err := s.NewIngestTable(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < to; i++ {
		if err := tb.Set([]byte(fmt.Sprintf("k%05d", i)), []byte(fmt.Sprintf("v%d-%s-%s", i, tag, strings.Repeat("x", 100)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.Finish(); err != nil {
		t.Fatal(err)
	}
	return tb
}

// ingestLeftovers lists the files of tables left in the store's directory.
func ingestLeftovers(t *testing.T, fs vfs.FS) []string {
	t.Helper()
	names, err := fs.List("db")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, name := range names {
		if strings.HasPrefix(name, ingestPrefix) {
			left = append(left, name)
		}
	}
	return left
}

// Several tables, compressed or not, given in any order, are ingested in one
// step; empty ones are skipped; every file is removed.
func TestIngestTablesIngestsDisjointTablesAtOnce(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	empty, err := s.NewIngestTable(IngestTableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.Finish(); err != nil {
		t.Fatal(err)
	}
	ts := []*IngestTable{
		writeTable(t, s, IngestTableOptions{Uncompressed: true}, 2000, 3000, "c"),
		empty,
		writeTable(t, s, IngestTableOptions{}, 0, 1000, "a"),
		writeTable(t, s, IngestTableOptions{Uncompressed: true}, 1000, 2000, "b"),
	}
	n, err := s.IngestTables(context.Background(), ts)
	if err != nil || n != 3000 {
		t.Fatalf("IngestTables = %d, %v; want 3000 pairs", n, err)
	}
	for i := range 3000 {
		tag := string("abc"[i/1000])
		v, found, err := s.Get(nil, []byte(fmt.Sprintf("k%05d", i)))
		if err != nil || !found || !strings.HasPrefix(string(v), fmt.Sprintf("v%d-%s-", i, tag)) {
			t.Fatalf("k%05d = %.20q, %v, %v", i, v, found, err)
		}
	}
	if left := ingestLeftovers(t, fs); len(left) != 0 {
		t.Errorf("%v left in the store's directory", left)
	}
}

// Overlapping or unfinished tables are refused: nothing is ingested, and
// every file is removed all the same.
func TestIngestTablesRefusesOverlapsAndUnfinishedTables(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	unfinished := func() *IngestTable {
		tb, err := s.NewIngestTable(IngestTableOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := tb.Set([]byte("k09999"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		return tb
	}
	for name, tables := range map[string]func() []*IngestTable{
		"overlap": func() []*IngestTable {
			return []*IngestTable{writeTable(t, s, IngestTableOptions{}, 0, 100, "a"), writeTable(t, s, IngestTableOptions{}, 99, 200, "b")}
		},
		"unfinished": func() []*IngestTable {
			return []*IngestTable{writeTable(t, s, IngestTableOptions{}, 0, 100, "a"), unfinished()}
		},
	} {
		if n, err := s.IngestTables(context.Background(), tables()); err == nil || n != 0 {
			t.Fatalf("%s: IngestTables = %d, %v; want an error", name, n, err)
		}
		if _, found, _ := s.Get(nil, []byte("k00000")); found {
			t.Fatalf("%s: k00000 visible after a refused ingest", name)
		}
		if left := ingestLeftovers(t, fs); len(left) != 0 {
			t.Errorf("%s: %v left in the store's directory", name, left)
		}
	}
	// A table's keys must increase; a discarded table leaves nothing.
	tb, err := s.NewIngestTable(IngestTableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Set([]byte("b"), nil); err != nil {
		t.Fatal(err)
	}
	if err := tb.Set([]byte("a"), nil); err == nil {
		t.Fatal("Set of a smaller key succeeded")
	}
	tb.Discard()
	tb.Discard()
	if left := ingestLeftovers(t, fs); len(left) != 0 {
		t.Errorf("%v left after Discard", left)
	}
}
