package registry

import "testing"

func TestReadyFollowsTheWarmingUpPartitions(t *testing.T) {
	v := NewView()
	apply := func(p int32, state string) {
		t.Helper()
		r, err := StatusRecord("registry", Status{Feature: "f@2", Topic: "tx", Partition: p, State: state})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Apply(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	if !v.Ready("f@2") {
		t.Fatal("a version with no status is ready")
	}
	apply(0, StateWarmingUp)
	apply(1, StateReady)
	if v.Ready("f@2") {
		t.Fatal("one partition warming up: not ready")
	}
	if !v.Ready("f@1") {
		t.Fatal("another version is unaffected")
	}
	apply(0, StateReady)
	if !v.Ready("f@2") {
		t.Fatal("every partition ready: ready")
	}
	apply(1, StateWarmingUp)
	if err := v.Apply([]byte("status/f@2/tx/1"), nil); err != nil { // tombstone
		t.Fatal(err)
	}
	if !v.Ready("f@2") {
		t.Fatal("a deleted warming status no longer counts")
	}
}
