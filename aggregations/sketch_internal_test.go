package aggregations

import (
	"math/rand/v2"
	"testing"
)

// TestSketchMergeGrowsStorageLinearly merges many small sketches into one, as a
// read over many tiles does: the storage must stay within twice what the merged
// sketch holds (a growth rule based on capacity instead of length once doubled
// the storage at every merge).
func TestSketchMergeGrowsStorageLinearly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h hll
	var q quantiles
	for i := range 600 {
		var ho hll
		var qo quantiles
		for range 1 + rng.IntN(2) {
			v := float64(rng.IntN(1 << 20))
			ho.add(v)
			qo.add(v - 1e5)
		}
		h.merge(&ho)
		q.merge(&qo)
		if h.registers() && h.dense == nil && cap(h.sparse) > 2*len(h.sparse)+2*DistinctExactMax {
			t.Fatalf("merge %d: hll holds %d registers in storage for %d", i, len(h.sparse), cap(h.sparse))
		}
		if c, l := cap(q.pos)+cap(q.neg), len(q.pos)+len(q.neg); c > 2*l+8 {
			t.Fatalf("merge %d: quantile sketch holds %d buckets in storage for %d", i, l, c)
		}
	}
}

// TestSparseAndDenseEstimatesAgree checks that in register mode the estimate
// depends on the registers only: a sketch forced dense early estimates exactly
// what the sparse one does, and a merge gives the same registers in either
// representation.
func TestSparseAndDenseEstimatesAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 10, 500, 1000} {
		var sparse, dense hll
		sparse.toRegisters()
		dense.toRegisters()
		dense.toDense()
		for range n {
			v := rng.Float64()
			sparse.add(v)
			dense.add(v)
		}
		if sparse.dense != nil && n <= hllSparseMax {
			t.Fatalf("n=%d: sketch went dense", n)
		}
		if sparse.estimate() != dense.estimate() {
			t.Errorf("n=%d: sparse estimates %v, dense %v", n, sparse.estimate(), dense.estimate())
		}
		var m1, m2 hll
		m1.merge(&sparse)
		m2.merge(&dense)
		if m1.estimate() != m2.estimate() || m1.nonZero() != sparse.nonZero() {
			t.Errorf("n=%d: merged estimates %v and %v", n, m1.estimate(), m2.estimate())
		}
	}
}

// TestExactModeIsAFunctionOfTheSet checks the switch from exact hashes to
// registers: up to DistinctExactMax distinct values the estimate is their
// number, past it the registers of all of them, whatever the order of adds and
// merges (the encoding included).
func TestExactModeIsAFunctionOfTheSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 2, DistinctExactMax - 1, DistinctExactMax, DistinctExactMax + 1, 300} {
		values := make([]float64, n)
		for i := range values {
			values[i] = float64(i) * 1.5
		}
		var one hll
		for _, v := range values {
			one.add(v)
			one.add(v) // duplicates change nothing
		}
		if n <= DistinctExactMax && (one.registers() || one.estimate() != float64(n)) {
			t.Fatalf("n=%d: registers %v, estimate %v; want exact", n, one.registers(), one.estimate())
		}
		if n > DistinctExactMax && !one.registers() {
			t.Fatalf("n=%d: still exact", n)
		}
		want := string(appendHLL(nil, &one))
		for range 20 {
			parts := make([]hll, 1+rng.IntN(5))
			for _, i := range rng.Perm(n) {
				parts[rng.IntN(len(parts))].add(values[i])
			}
			var merged hll
			for _, i := range rng.Perm(len(parts)) {
				merged.merge(&parts[i])
			}
			if got := string(appendHLL(nil, &merged)); got != want || merged.estimate() != one.estimate() {
				t.Fatalf("n=%d, %d parts: merged estimate %v, one sketch %v (same encoding: %v)", n, len(parts), merged.estimate(), one.estimate(), got == want)
			}
		}
	}
}
