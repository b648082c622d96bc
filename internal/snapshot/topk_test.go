package snapshot

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/entity"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// TestSnapshotCarriesTopK: an entity's state with top_k features (of a
// string field, exact, with pending events; of a double field past
// TopKExactMax distinct values, in the Misra-Gries summary) survives a
// snapshot written and read back: decoded, it finalizes to the same
// values, counts and error as before.
func TestSnapshotCarriesTopK(t *testing.T) {
	ctx := context.Background()
	w, err := aggregations.ParseWindow("7d", "")
	if err != nil {
		t.Fatal(err)
	}
	strs := w.For(aggregations.TopK, 0).WithK(3).WithStrings()
	nums := w.For(aggregations.TopK, 0).WithK(5)
	now := t0.UnixMilli()
	series := make([]aggregations.Series, 2)
	for i, m := range []string{"café ☕", "", "m-2", `q"uote`, "m-2", "", "m-2"} {
		e := aggregations.Event{TS: now - int64(7-i)*aggregations.Hour, Seq: int64(i), Str: m}
		series[0].Apply(strs, e, now-3*aggregations.Hour) // the later events stay pending
	}
	for i := range 3000 {
		v := float64(i % 1500)
		if i%3 == 0 {
			v = float64(i % 7)
		}
		series[1].Apply(nums, aggregations.Event{TS: now - int64(i%40)*aggregations.Minute - 1, Seq: int64(i), Value: v}, now)
	}
	ids := []string{"top_merchants@1", "top_amounts@1"}
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
	want, ok := aggregations.FinalizeStringTopK(series[0].Read(strs, T), 3)
	if l, lok := aggregations.FinalizeStringTopK(got[0].Read(strs, T), 3); !ok || !lok || !slices.Equal(l, want) ||
		fmt.Sprint(want) != `[{m-2 3} { 2} {café ☕ 1}]` {
		t.Errorf("string top_k after the snapshot: %v (%v), before %v (%v)", l, lok, want, ok)
	}
	before, after := series[1].Read(nums, T), got[1].Read(nums, T)
	wantN, ok := aggregations.FinalizeTopK(before, 5)
	if l, lok := aggregations.FinalizeTopK(after, 5); !ok || !lok || !slices.Equal(l, wantN) ||
		aggregations.TopKError(after) != aggregations.TopKError(before) || aggregations.TopKError(before) == 0 {
		t.Errorf("number top_k after the snapshot: %v (%v, error %d), before %v (%v, error %d)", l, lok, aggregations.TopKError(after), wantN, ok, aggregations.TopKError(before))
	}
}
