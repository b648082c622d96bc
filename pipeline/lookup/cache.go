package lookup

import (
	"hash/maphash"
	"sync"
	"unsafe"
)

// viewCache holds encoded entity views in front of the Pebble view, so that a
// lookup of a recently read entity costs a map read instead of a Pebble Get
// (either way followed by lookupView.parse and the decode of the series
// asked for).
//
// It holds the encoded bytes, not decoded views, on purpose: a decoded view
// is a tree of slices (every tile of every feature), and 100,000 of them are
// millions of pointers the garbage collector must trace on every cycle
// (measured: 229 MB, 1.2M objects and 40 ms GC cycles for 10,000 users,
// during which one of two cores marks). A byte slice is one pointer-free
// object per entity. Decoding into a reused view costs a few microseconds
// and allocates nothing.
//
// Invariant: a hit returns exactly the value the Pebble view holds at that
// moment, never an older one. The feature-log consumer keeps it so around
// every commit that changes an entity:
//
//  1. before the commit, invalidate: remove the entity and bump its shard's
//     generation, so lookups miss and read Pebble (old or new value, as they
//     would without a cache);
//  2. after the commit, either publish: store the new committed value (the
//     value Pebble's merge of the batch's operand gives) and bump the
//     generation again, replacing whatever entry the key has, full shard
//     or not; or invalidate again. Either way the entry a lookup may have
//     put in between goes: one that missed after step 1 and read Pebble
//     before the commit put the old value under the generation step 1
//     left. The consumer publishes the entities the cache held before the
//     commit, and invalidates the others.
//
// A miss inserts the value it read from Pebble only if its shard's generation
// did not move between before the read and the insert: otherwise a commit may
// have raced with the read, and the value read may already be stale.
//
// Cached values are immutable: the consumer publishes bytes it no longer
// modifies, lookups only read them, so hits take no copy. A value is the
// entity's value exactly as the Pebble view holds it (entityView.encode's
// layout), or empty (not nil) for an entity the feature log never
// mentioned. Each of the cacheShards shards holds at most max/cacheShards
// entries; inserting into a full shard evicts an arbitrary entry of it.
// Hits take a shard read lock.
//
// Each entry also carries the answers lookups computed from its bytes (see
// answercache.go): they go with the bytes, so a commit that replaces or
// removes the entity's value drops them too, and setAnswers stores answers
// only on the entry whose bytes they were computed from.
type viewCache struct {
	// shards come first, at the object's start: Go's heap size classes
	// above 1 KiB are multiples of 64 bytes, so the object (about 4 KiB)
	// is 64-byte aligned and each 64-byte shard has a cache line of its
	// own.
	shards [cacheShards]cacheShard
	seed   maphash.Seed
	max    int // per shard; 0 disables the cache
}

const cacheShards = 64

// cacheShard is padded to 64 bytes, one cache line on amd64 and arm64, so
// that lookups taking one shard's lock do not contend with those taking
// its neighbour's (TestCacheShardIsOneCacheLine).
type cacheShard struct {
	mu  sync.RWMutex // 24 bytes
	gen uint64
	m   map[string]cacheEntry
	_   [24]byte
}

// cacheEntry is one cached view: val, immutable, and the answers lookups
// computed from it (nil until a lookup stores some; replaced as a whole,
// never modified, by setAnswers). Both are pointer-free objects, so an
// entry costs the garbage collector two objects to trace, and a hit
// copies the entry out under the shard's read lock.
type cacheEntry struct {
	val []byte
	ans []cachedAnswer
}

func newViewCache(entries int) *viewCache {
	c := &viewCache{seed: maphash.MakeSeed()}
	if entries > 0 {
		c.max = max(entries/cacheShards, 1)
	}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

// enabled reports whether the cache keeps anything (Options.CacheEntries
// is not negative).
func (c *viewCache) enabled() bool { return c.max > 0 }

func (c *viewCache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

// get returns the cached value of the view key (empty: the entity is
// absent), or nil and the generation to pass to put after reading Pebble.
func (c *viewCache) get(key []byte) (v []byte, gen uint64) {
	e, _, gen := c.entry(key)
	return e.val, gen
}

// entry returns the cache entry of the view key (found false: a miss) and
// the generation to pass to put after reading Pebble.
func (c *viewCache) entry(key []byte) (e cacheEntry, found bool, gen uint64) {
	if c.max == 0 {
		return cacheEntry{}, false, 0
	}
	sh := c.shard(key)
	sh.mu.RLock()
	e, found = sh.m[string(key)]
	gen = sh.gen
	sh.mu.RUnlock()
	return e, found, gen
}

// put caches v (not nil), read from Pebble after entry returned gen, unless
// the shard changed meanwhile. v must not be modified afterwards. It
// returns the entry that holds the key's value afterwards (found false:
// none does): v's, or one another lookup put meanwhile, kept with its
// answers (the same value: no commit happened since gen).
func (c *viewCache) put(key []byte, gen uint64, v []byte) (e cacheEntry, found bool) {
	if c.max == 0 {
		return cacheEntry{}, false
	}
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen {
		return cacheEntry{}, false
	}
	if e, ok := sh.m[string(key)]; ok {
		return e, true
	}
	if len(sh.m) >= c.max {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	e = cacheEntry{val: v}
	sh.m[string(key)] = e
	return e, true
}

// setAnswers replaces the answers of the view key's entry with ans, if the
// entry still holds val (the same bytes, not a copy: the answers were
// computed from them); otherwise a commit replaced or removed the value,
// and ans is dropped. ans must not be modified afterwards.
func (c *viewCache) setAnswers(key, val []byte, ans []cachedAnswer) {
	sh := c.shard(key)
	sh.mu.Lock()
	if e, ok := sh.m[string(key)]; ok && sameBytes(e.val, val) {
		e.ans = ans
		sh.m[string(key)] = e
	}
	sh.mu.Unlock()
}

// sameBytes reports whether a and b are the same bytes in memory. Two
// empty values (absent entities) are the same: the view of an entity, once
// written, is never deleted while the replica runs, so an absent value is
// only ever replaced by a written one.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || unsafe.SliceData(a) == unsafe.SliceData(b))
}

// invalidate removes the view key before a commit that changes it, and
// returns the value it held (nil: none), which is the committed value.
func (c *viewCache) invalidate(key []byte) []byte {
	if c.max == 0 {
		return nil
	}
	sh := c.shard(key)
	sh.mu.Lock()
	old := sh.m[string(key)].val
	delete(sh.m, string(key))
	sh.gen++
	sh.mu.Unlock()
	return old
}

// publish stores v, the committed value of the view key. v must not be
// modified afterwards.
func (c *viewCache) publish(key []byte, v []byte) {
	if c.max == 0 {
		return
	}
	sh := c.shard(key)
	sh.mu.Lock()
	sh.gen++
	// Replace the key's entry even in a full shard: a lookup that missed
	// after invalidate and read Pebble before the commit may have put the
	// old value since (its generation was already the invalidated one),
	// and only this store removes it. A full shard without the key stays
	// as it is (its entries are the ones lookups read).
	if _, ok := sh.m[string(key)]; ok || len(sh.m) < c.max {
		sh.m[string(key)] = cacheEntry{val: v}
	}
	sh.mu.Unlock()
}
