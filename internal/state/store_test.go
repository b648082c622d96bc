package state

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/featurepipe/featurepipe/internal/keys"
)

func TestStateAndOffsetCommitTogetherAndSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, found, err := s.GetOffset(keys.Offset("tx", 0)); err != nil || found {
		t.Fatalf("fresh store must have no offset: %v %v", found, err)
	}
	b := s.NewBatch()
	_ = b.Set(keys.State(nil, "tx", 0, "u1"), []byte("tiles"), nil)
	_ = b.Set(keys.Offset("tx", 0), keys.PutU64(42), nil)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	off, found, err := s.GetOffset(keys.Offset("tx", 0))
	if err != nil || !found || off != 42 {
		t.Fatalf("offset after reopen: %d %v %v", off, found, err)
	}
	v, found, err := s.Get(nil, keys.State(nil, "tx", 0, "u1"))
	if err != nil || !found || string(v) != "tiles" {
		t.Fatalf("state after reopen: %q %v %v", v, found, err)
	}
}

func TestUncommittedBatchLeavesNoTrace(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := s.NewBatch()
	_ = b.Set(keys.Offset("tx", 1), keys.PutU64(7), nil)
	_ = b.Close()
	if _, found, _ := s.GetOffset(keys.Offset("tx", 1)); found {
		t.Fatal("a closed, uncommitted batch must not be visible")
	}
}
