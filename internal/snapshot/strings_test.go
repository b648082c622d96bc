package snapshot

import (
	"context"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/entity"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// TestSnapshotCarriesStringFeatures: an entity's state with string
// features (a last and a last_k of a string field: tiles with their string
// sections, pending events included) survives a snapshot written and read
// back: decoded, it finalizes to the same strings as before.
func TestSnapshotCarriesStringFeatures(t *testing.T) {
	ctx := context.Background()
	w, err := aggregations.ParseWindow("7d", "")
	if err != nil {
		t.Fatal(err)
	}
	last := w.For(aggregations.Last, 0).WithStrings()
	list := w.For(aggregations.LastK, 0).WithK(3).WithStrings()
	now := t0.UnixMilli()
	series := make([]aggregations.Series, 2)
	for i, m := range []string{"café ☕", "", "m-2", `q"uote`, "m-5"} {
		e := aggregations.Event{TS: now - int64(5-i)*aggregations.Hour, Seq: int64(i), Str: m}
		series[0].Apply(last, e, now-3*aggregations.Hour) // the later events stay pending
		series[1].Apply(list, e, now-3*aggregations.Hour)
	}
	ids := []string{"last_merchant@1", "merchants3@1"}
	value := entity.Append(nil, ids, series)
	s := NewStore(newDir(t), 0)
	m, err := s.Write(ctx, Manifest{Worker: "w", CreatedAt: t0}, []PartitionData{
		part("visits", 0, 5, now, []kv{{keys.State(nil, "visits", 0, "u1"), value}})})
	if err != nil {
		t.Fatal(err)
	}
	back := readAll(t, s, m, m.Sources[0].File)
	if len(back) != 1 {
		t.Fatalf("read back %d pairs, want 1", len(back))
	}
	got := make([]aggregations.Series, 2)
	if err := entity.Decode(back[0].v, func(id []byte) *aggregations.Series {
		return &got[slices.Index(ids, string(id))]
	}); err != nil {
		t.Fatal(err)
	}
	T := now + 1
	want, ok := aggregations.FinalizeString(aggregations.Last, series[0].Read(last, T))
	if s, sok := aggregations.FinalizeString(aggregations.Last, got[0].Read(last, T)); !ok || !sok || s != want || want != "m-5" {
		t.Errorf("last after the snapshot: %q (%v), before %q (%v), want m-5", s, sok, want, ok)
	}
	wantL, ok := aggregations.FinalizeStringList(aggregations.LastK, series[1].Read(list, T))
	if l, lok := aggregations.FinalizeStringList(aggregations.LastK, got[1].Read(list, T)); !ok || !lok || !slices.Equal(l, wantL) ||
		!slices.Equal(wantL, []string{"m-5", `q"uote`, "m-2"}) {
		t.Errorf("last_k after the snapshot: %q (%v), before %q (%v)", l, lok, wantL, ok)
	}
}
