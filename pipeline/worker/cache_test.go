package worker

import (
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

// TestPreviousIntervalEntitiesAreKept: an entity touched in the interval
// before the last publication is taken from memory, not decoded from
// Pebble again, without counting toward MaxCachedEntities until it is
// touched again; one touched two intervals ago is read from Pebble.
func TestPreviousIntervalEntitiesAreKept(t *testing.T) {
	st, err := state.Open("state", state.Options{FS: vfs.NewMem(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := &Worker{o: Options{Store: st}, pub: &publisher{}}
	ps := &partState{tp: topicPartition{"t", 0}, plan: planOf("a@1"),
		cache: map[string]*entityState{}, dirty: map[dirtyTile]int64{}, pending: true}
	w.pub.pending = []*partState{ps}
	load := func(key string) *entityState {
		t.Helper()
		es, err := w.entity(ps, key)
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	publish := func() { // what a publication does once its records are acknowledged
		w.pub.dropLocked(nil)
		w.pub.pending = []*partState{ps}
	}
	u1, u2 := load("u1"), load("u2")
	publish()
	if got := w.pub.cachedEntities(); got != 0 {
		t.Fatalf("%d entities counted right after a publication, want 0", got)
	}
	if load("u1") != u1 {
		t.Fatal("u1, touched in the previous interval, was loaded again instead of kept")
	}
	if got := w.pub.cachedEntities(); got != 1 {
		t.Fatalf("%d entities counted after touching one kept entity, want 1", got)
	}
	publish()
	if load("u1") != u1 {
		t.Fatal("u1, touched in each interval, was loaded again instead of kept")
	}
	if load("u2") == u2 {
		t.Fatal("u2, last touched two intervals ago, is still kept: memory would grow with every interval")
	}
}
