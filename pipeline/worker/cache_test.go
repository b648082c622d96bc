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
