package lookup

import (
	"fmt"
	"testing"
)

// The cache never returns a value older than the Pebble view: these are the
// interleavings of a lookup's miss (get, read Pebble, put) with the
// consumer's commit (invalidate, commit, publish).
func TestViewCacheNeverServesAStaleView(t *testing.T) {
	key := []byte("user\x00u1")
	old, committed := &entityView{ids: []string{"old"}}, &entityView{ids: []string{"new"}}
	for _, tc := range []struct {
		name string
		run  func(c *viewCache)
		want *entityView // what a lookup gets from the cache afterwards; nil: a miss
	}{
		{"a miss caches what it read", func(c *viewCache) {
			_, gen := c.get(key)
			c.put(key, gen, old)
		}, old},
		{"a commit during the read keeps the read value out", func(c *viewCache) {
			_, gen := c.get(key) // then reads the old value from Pebble...
			c.invalidate(key)    // ...while the consumer commits
			c.put(key, gen, old)
		}, nil},
		{"a read racing the whole commit keeps the read value out", func(c *viewCache) {
			_, gen := c.get(key)
			c.invalidate(key)
			c.publish(key, committed)
			c.put(key, gen, old)
		}, committed},
		{"publish replaces a cached value", func(c *viewCache) {
			_, gen := c.get(key)
			c.put(key, gen, old)
			c.invalidate(key)
			c.publish(key, committed)
		}, committed},
		{"invalidate removes the cached value before the commit", func(c *viewCache) {
			_, gen := c.get(key)
			c.put(key, gen, old)
			c.invalidate(key)
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newViewCache(1000)
			tc.run(c)
			if got, _ := c.get(key); got != tc.want {
				t.Errorf("cache holds %v, want %v", got, tc.want)
			}
		})
	}
}

func TestViewCacheIsBounded(t *testing.T) {
	c := newViewCache(cacheShards * 4)
	for i := range 10_000 {
		k := []byte(fmt.Sprint("k", i))
		_, gen := c.get(k)
		c.put(k, gen, &entityView{})
		c.publish([]byte(fmt.Sprint("p", i)), &entityView{})
	}
	for i := range c.shards {
		if n := len(c.shards[i].m); n > 4 {
			t.Fatalf("shard %d holds %d entries, want at most 4", i, n)
		}
	}
	off := newViewCache(0)
	_, gen := off.get([]byte("k"))
	off.put([]byte("k"), gen, &entityView{})
	if e, _ := off.get([]byte("k")); e != nil {
		t.Error("a disabled cache returned a view")
	}
}
