package worker

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/featurepipe/featurepipe/internal/state"
)

// TestCachedEntitiesCountsEveryLoad: entities loaded through entity() count
// toward MaxCachedEntities whoever loads them (the live stream or a
// bootstrap, which runs after the live batch was accounted), once each.
func TestCachedEntitiesCountsEveryLoad(t *testing.T) {
	st, err := state.Open("state", state.Options{FS: vfs.NewMem(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := &Worker{o: Options{Store: st}, pub: &publisher{}}
	newPart := func(p int32) *partState {
		return &partState{tp: topicPartition{"t", p}, plan: planOf("a@1", "b@1"),
			cache: map[string]*entityState{}, dirty: map[dirtyTile]int64{}, pending: true}
	}
	live, boot := newPart(0), newPart(1)
	w.pub.pending = []*partState{live, boot}
	for _, k := range []string{"u1", "u2", "u1"} {
		if _, err := w.entity(live, k); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"u3", "u4", "u5"} { // as applyBoot loads them
		if _, err := w.entity(boot, k); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.pub.cachedEntities(); got != 5 {
		t.Fatalf("%d cached entities counted, want 5", got)
	}
}

// TestKeptEntitiesAreBoundedLeastRecentFirst: an entity touched in an
// earlier interval is taken from memory, not decoded from Pebble again,
// without counting toward MaxCachedEntities until it is touched again, as
// long as the kept entities of all partitions stay within
// MaxCachedEntities; beyond it those touched longest ago go (down to half
// the bound, whole publications at a time, never the last one's), and are
// read from Pebble when touched again.
func TestKeptEntitiesAreBoundedLeastRecentFirst(t *testing.T) {
	st, err := state.Open("state", state.Options{FS: vfs.NewMem(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := &Worker{o: Options{Store: st}, pub: &publisher{maxCached: 6}}
	newPart := func(p int32) *partState {
		return &partState{tp: topicPartition{"t", p}, plan: planOf("a@1"),
			cache: map[string]*entityState{}, dirty: map[dirtyTile]int64{}, pending: true}
	}
	p0, p1 := newPart(0), newPart(1)
	loaded := map[string]*entityState{}
	// touch loads keys of ps and reports whether each was the instance
	// loaded before (kept) rather than a new one (read from Pebble).
	touch := func(ps *partState, ks ...string) []bool {
		t.Helper()
		var same []bool
		for _, k := range ks {
			es, err := w.entity(ps, k)
			if err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("%d/%s", ps.tp.partition, k)
			same = append(same, loaded[id] == es)
			loaded[id] = es
		}
		return same
	}
	publish := func() { // what a publication does once its records are acknowledged
		w.pub.dropLocked(nil)
		w.pub.pending = []*partState{p0, p1}
	}
	w.pub.pending = []*partState{p0, p1}
	touch(p0, "u1", "u2")
	touch(p1, "v1")
	publish() // kept: u1 u2 v1 (generation 0)
	if got := w.pub.cachedEntities(); got != 0 {
		t.Fatalf("%d entities counted right after a publication, want 0", got)
	}
	if got := touch(p0, "u1"); !got[0] {
		t.Fatal("u1, touched in the previous interval, was loaded again instead of kept")
	}
	if got := w.pub.cachedEntities(); got != 1 {
		t.Fatalf("%d entities counted after touching one kept entity, want 1", got)
	}
	publish() // kept: u2 v1 (0), u1 (1)
	publish() // nothing new
	if got := touch(p1, "v1"); !got[0] {
		t.Fatal("v1, touched two intervals ago and within the bound, was loaded again instead of kept")
	}
	publish() // kept: u2 (0), u1 (1), v1 (3)
	touch(p0, "u3", "u4", "u5")
	publish() // kept: u2 (0), u1 (1), v1 (3), u3 u4 u5 (4): 6, within the bound
	if got := touch(p0, "u2"); !got[0] {
		t.Fatal("u2, within the bound, was loaded again instead of kept")
	}
	touch(p1, "v2")
	publish() // 7 > 6: generation 5 (u2 v2) stays; generation 4 (3 entities) no longer fits in 6/2 with it: it and older go
	for _, c := range []struct {
		ps   *partState
		key  string
		kept bool
	}{{p0, "u2", true}, {p1, "v2", true}, {p0, "u1", false}, {p1, "v1", false}, {p0, "u3", false}} {
		if _, ok := c.ps.kept[c.key]; ok != c.kept {
			t.Errorf("after exceeding the bound, %d/%s kept: %v, want %v", c.ps.tp.partition, c.key, ok, c.kept)
		}
	}
	if got := touch(p0, "u1"); got[0] {
		t.Fatal("u1, evicted, is still the same instance")
	}
	// A publication larger than the bound keeps its own entities (the
	// newest generation always stays) and nothing older.
	publish()
	touch(p0, "w1", "w2", "w3", "w4", "w5", "w6", "w7")
	publish()
	if n := len(p0.kept) + len(p1.kept); n != 7 {
		t.Fatalf("%d entities kept after a publication of 7, want its 7", n)
	}
	// Partitions handed over release theirs.
	if err := w.pub.handOver(context.Background(), func(ps *partState) bool { return ps == p0 }, false); err != nil {
		t.Fatal(err)
	}
	if p0.kept != nil || len(w.pub.keptParts) != 0 {
		t.Fatalf("a handed-over partition still holds %d kept entities (%d partitions tracked)", len(p0.kept), len(w.pub.keptParts))
	}
}
