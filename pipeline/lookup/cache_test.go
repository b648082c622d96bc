package lookup

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
)

// The cache never returns a value older than the Pebble view: these are the
// interleavings of a lookup's miss (get, read Pebble, put) with the
// consumer's commit (invalidate, commit, publish).
func TestViewCacheNeverServesAStaleView(t *testing.T) {
	key := []byte("user\x00u1")
	old, committed := []byte("old"), []byte("new")
	for _, tc := range []struct {
		name string
		run  func(c *viewCache)
		want []byte // what a lookup gets from the cache afterwards; nil: a miss
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
		{"a miss between invalidate and the commit is replaced by publish", func(c *viewCache) {
			c.invalidate(key)
			_, gen := c.get(key) // reads the old value from Pebble before the commit...
			c.put(key, gen, old) // ...and caches it once the commit is done
			c.publish(key, committed)
		}, committed},
	} {
		// Every interleaving with room in the key's shard and with a full
		// one (one entry per shard): a full shard must not keep an old
		// value that publish would otherwise have replaced (the demo's
		// million user-merchant pairs keep every shard full; the replica
		// then served a view older than Pebble's until restarted).
		for _, entries := range []int{1000, cacheShards} {
			t.Run(fmt.Sprintf("%s/%d entries", tc.name, entries), func(t *testing.T) {
				c := newViewCache(entries)
				tc.run(c)
				if got, _ := c.get(key); !bytes.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
					t.Errorf("cache holds %q, want %q", got, tc.want)
				}
			})
		}
	}
}

func TestViewCacheIsBounded(t *testing.T) {
	c := newViewCache(cacheShards * 4)
	for i := range 10_000 {
		k := []byte(fmt.Sprint("k", i))
		_, gen := c.get(k)
		c.put(k, gen, absent)
		c.publish([]byte(fmt.Sprint("p", i)), absent)
	}
	for i := range c.shards {
		if n := len(c.shards[i].m); n > 4 {
			t.Fatalf("shard %d holds %d entries, want at most 4", i, n)
		}
	}
	off := newViewCache(0)
	_, gen := off.get([]byte("k"))
	off.put([]byte("k"), gen, absent)
	if v, _ := off.get([]byte("k")); v != nil {
		t.Error("a disabled cache returned a view")
	}
}

// Lookups parse every cached view into a reused lookupView, and cache
// misses decode Pebble values into a reused entityView: either must leave
// exactly the view it read behind, whatever the previous one held (other
// features, more tiles, fewer features), and a lookupView decodes only the
// series asked for.
func TestReusedViewsDecodeLikeFreshOnes(t *testing.T) {
	mk := func(ids ...string) *entityView {
		e := new(entityView)
		for n, id := range ids {
			i := e.add(id, 0)
			e.updated[i] = int64(1000 + n)
			for k := range n + 1 {
				e.series[i].SetTile(aggregations.Tile{Start: int64(k) * 3600_000, IR: aggregations.IR{Count: int64(k + 1), Sum: float64(n)}})
			}
		}
		return e
	}
	views := []*entityView{
		mk("a@1", "b@1", "c@1"),
		mk("a@1", "b@1", "c@1"), // same ids: strings reused
		mk("b@1", "a@1"),        // fewer, other order
		mk("x@2", "a@1", "b@1", "c@1", "d@1"),
		mk(),
		mk("a@1"),
	}
	reused, lv := new(entityView), new(lookupView)
	for n, want := range views {
		if err := reused.decode(want.encode(nil)); err != nil {
			t.Fatalf("view %d: %v", n, err)
		}
		if got, exp := reused.encode(nil), want.encode(nil); !bytes.Equal(got, exp) {
			t.Errorf("view %d decoded into a reused entityView re-encodes as %x, want %x", n, got, exp)
		}
		if err := lv.parse(want.encode(nil)); err != nil {
			t.Fatalf("view %d: %v", n, err)
		}
		var lvIDs []string
		for _, id := range lv.ids {
			lvIDs = append(lvIDs, string(id))
		}
		if !slices.Equal(lvIDs, want.ids) || !slices.Equal(lv.updated, want.updated) {
			t.Errorf("view %d: ids %v updated %v, want %v %v", n, lv.ids, lv.updated, want.ids, want.updated)
		}
		for i := range lv.ids {
			if i%2 == 1 {
				continue // decoded only when asked for
			}
			sr, err := lv.seriesAt(i)
			if err != nil {
				t.Fatalf("view %d series %d: %v", n, i, err)
			}
			if got, exp := aggregations.AppendSeries(nil, sr), aggregations.AppendSeries(nil, &want.series[i]); !bytes.Equal(got, exp) {
				t.Errorf("view %d series %s = %x, want %x", n, lv.ids[i], got, exp)
			}
		}
		for i := range lv.decoded {
			if lv.decoded[i] != (i%2 == 0) {
				t.Errorf("view %d: series %d decoded %v, want only the ones asked for", n, i, lv.decoded[i])
			}
		}
	}
	// Truncated or padded bytes are refused, not misread.
	good := views[3].encode(nil)
	for _, bad := range [][]byte{good[:len(good)-1], append(slices.Clone(good), 0), good[:1]} {
		if err := lv.parse(bad); err == nil {
			t.Errorf("parse accepted %d corrupt bytes", len(bad))
		}
	}
}

// Answers stay with the bytes they were computed from: a lookup that
// computed answers from a value a commit has since replaced (or removed)
// cannot attach them to the new value, and a commit drops the answers of
// the value it replaces.
func TestAnswersStayWithTheirView(t *testing.T) {
	key := []byte("user\x00u1")
	old, committed := []byte("old"), []byte("new")
	ans := []cachedAnswer{{from: 1, until: 2, feat: 3}}
	answers := func(c *viewCache) []cachedAnswer { e, _, _ := c.entry(key); return e.ans }

	c := newViewCache(1000)
	_, _, gen := c.entry(key)
	e, ok := c.put(key, gen, old)
	if !ok || !bytes.Equal(e.val, old) {
		t.Fatalf("put returned %q %v", e.val, ok)
	}
	c.setAnswers(key, e.val, ans)
	if got := answers(c); len(got) != 1 {
		t.Fatalf("answers of the value they were computed from: %v", got)
	}
	c.invalidate(key)
	c.publish(key, committed)
	if got := answers(c); got != nil {
		t.Fatalf("a commit kept the old value's answers: %v", got)
	}
	c.setAnswers(key, e.val, ans) // computed from old, stored after the commit
	if got := answers(c); got != nil {
		t.Fatalf("answers computed from the replaced value were attached to the new one: %v", got)
	}
	c.setAnswers(key, bytes.Clone(committed), ans) // equal bytes, not the cached ones
	if got := answers(c); got != nil {
		t.Fatalf("answers computed from a copy were attached: %v", got)
	}
	c.invalidate(key)
	c.setAnswers(key, committed, ans)
	if _, found, _ := c.entry(key); found {
		t.Fatal("setAnswers re-created an invalidated entry")
	}
	// A lookup that put a value returns the entry another lookup put
	// meanwhile (same generation: the same value), with its answers.
	_, _, gen = c.entry(key)
	first, _ := c.put(key, gen, committed)
	c.setAnswers(key, first.val, ans)
	if second, ok := c.put(key, gen, bytes.Clone(committed)); !ok || len(second.ans) != 1 || !sameBytes(second.val, first.val) {
		t.Fatalf("the second put returned %q with %d answers, want the first entry", second.val, len(second.ans))
	}
}
