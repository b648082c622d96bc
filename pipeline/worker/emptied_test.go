package worker

import (
	"reflect"
	"testing"
)

// A map that once held many entries is replaced when a publication finds
// few in it, so that later publications do not iterate and clear its old
// size; one that stays busy is cleared in place.
func TestEmptiedReplacesAMapThatOutgrewItsEntries(t *testing.T) {
	same := func(a, b map[int]int64) bool {
		return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
	}
	fill := func(m map[int]int64, n int) {
		for i := range n {
			m[i] = 1
		}
	}
	busiest := 0
	m := map[int]int64{}
	fill(m, 10_000)
	got := emptied(m, &busiest)
	if !same(got, m) || len(got) != 0 || busiest != 10_000 {
		t.Fatalf("a busy map: replaced %v, %d entries left, busiest %d; want cleared in place, busiest 10000", !same(got, m), len(got), busiest)
	}
	fill(got, 5_000) // half as busy: still cleared in place
	if again := emptied(got, &busiest); !same(again, got) || busiest != 10_000 {
		t.Fatalf("a map at half its busiest was replaced (busiest %d)", busiest)
	}
	fill(got, 100) // under 1/16 of its busiest: replaced
	fresh := emptied(got, &busiest)
	if same(fresh, got) || len(fresh) != 0 || busiest != 100 {
		t.Fatalf("a map at 1/100 of its busiest: replaced %v, %d entries, busiest %d; want a new empty map, busiest 100", !same(fresh, got), len(fresh), busiest)
	}
	small, b := map[int]int64{}, 0
	fill(small, 4_000)
	emptied(small, &b)
	if s2 := emptied(small, &b); !same(s2, small) {
		t.Fatal("a map that never held more than 4,096 entries was replaced")
	}
}
