package state

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// readsStore opens a store on a memory filesystem and fills it with n keys
// in rounds, each flushed to an SST, so that the memtables have grown to
// MemTableBytes and every key is read from a table, as in a worker whose
// state outgrew its memtable.
func readsStore(t *testing.T, o Options, n int) *Store {
	t.Helper()
	o.FS = vfs.NewMem()
	o.NoSync = true
	s, err := Open("db", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	val := bytes.Repeat([]byte("t"), 300)
	const rounds = 8
	for r := range rounds {
		b := s.NewBatch()
		for i := r; i < n; i += rounds {
			if err := b.Set(readsKey(i), val, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Commit(b); err != nil {
			t.Fatal(err)
		}
		if err := s.DB().Flush(); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func readsKey(i int) []byte { return fmt.Appendf(nil, "state/tx/0/user-%07d", i) }

// A point read of a key already flushed to an SST is served from the block
// cache the second time: the memtables (Pebble charges them to the same
// cache) do not take the CacheBytes meant for blocks. Before, with
// memtables as large as the cache, no block stayed cached and every read
// decompressed its block again.
func TestPointReadsOfFlushedKeysHitTheBlockCache(t *testing.T) {
	const n = 20_000 // ~6 MiB of values: more than one memtable
	s := readsStore(t, Options{CacheBytes: 4 << 20, MemTableBytes: 4 << 20}, n)
	read := func() {
		for i := range n {
			if _, found, err := s.Get(nil, readsKey(i)); err != nil || !found {
				t.Fatalf("key %d: found %v, %v", i, found, err)
			}
		}
	}
	read() // loads the blocks
	m0 := s.DB().Metrics().BlockCache
	read()
	m1 := s.DB().Metrics().BlockCache
	hits, misses := m1.Hits-m0.Hits, m1.Misses-m0.Misses
	if hits == 0 || misses*10 > hits {
		t.Fatalf("second read of %d keys (~6 MiB, cache 4 MiB of blocks after compression): %d block cache hits, %d misses; want at least 10 hits per miss (cache holds %d bytes)",
			n, hits, misses, m1.Size)
	}
}

// A point read of an absent key (an entity's first event) is answered by
// the tables' bloom filters without reading a data block.
func TestPointReadsOfAbsentKeysUseBloomFilters(t *testing.T) {
	const n = 20_000
	s := readsStore(t, Options{}, n)
	f0 := s.DB().Metrics().Filter
	for i := range n {
		// Between two keys that exist: inside every table's key range.
		if _, found, err := s.Get(nil, append(readsKey(i), '+')); err != nil || found {
			t.Fatalf("absent key %d: found %v, %v", i, found, err)
		}
	}
	f1 := s.DB().Metrics().Filter
	hits, misses := f1.Hits-f0.Hits, f1.Misses-f0.Misses
	// 10 bits per key: ~1% false positives per table consulted.
	if hits == 0 || misses*20 > hits {
		t.Fatalf("%d reads of absent keys: %d filter hits (data blocks skipped), %d misses; want at least 20 hits per miss", n, hits, misses)
	}
}
