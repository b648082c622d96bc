package aggregations

import (
	"math"
	"math/bits"
	"slices"
)

// HyperLogLog for ApproxDistinct.
//
// The sketch has m = 2^hllP = 4096 six-bit registers (one byte each). A value is
// hashed by its canonical float64 bits (-0 counts as 0) through a 64-bit
// bijective mixer; the top hllP bits pick the register and the register keeps
// the largest rho = 1 + the number of leading zeros of the other 52 bits (at
// most hllQ+1 = 53). The estimate is Ertl's improved raw estimator ("New
// cardinality estimation algorithms for HyperLogLog sketches", 2017), which
// needs no bias tables and is unbiased from 0 to far beyond 2^50 distinct
// values; its relative standard error is about 1.04/sqrt(m) = 1.625% (less
// just past the exact range below: about 1.1% there).
//
// Why not a library (axiomhq/hyperloglog, datasketches-go): the IR must give
// the identical estimate for the same set of values however tiles were merged
// (online, the lookup merges per-partition tiles; backfill merges its own), and
// the package is standard-library only. Here the estimate is a pure function of
// the registers, and merging is a register-wise max, so it is commutative,
// associative and idempotent bit for bit. HLL++-style libraries switch from a
// higher-precision sparse mode to the dense registers at points that depend on
// insertion and merge history, and their estimate depends on the mode.
//
// Exact below DistinctExactMax: while a sketch has seen at most DistinctExactMax
// distinct values it keeps their 64-bit hashes (the mixer is a bijection of the
// value's bits, so distinct values never share a hash) and the estimate is their
// number, exact. Past that it keeps the registers only.
//
// Values of other types (ValueType): a boolean is the number 0 or 1 and a long
// of magnitude at most 2^53 its exact float64, so neither adds any error; a
// string, and a long beyond 2^53, reach the sketch as a 63-bit hash of the
// value (XXH64 with one bit cleared so that the float64 is finite, computed by
// the decoder in pipeline/events, the same in the workers and in backfill).
// Two distinct such values share a hash with probability 2^-63, so among n
// distinct values a collision (which undercounts by one) happens with
// probability below n^2/2^64: 5.4e-8 for a million values, 5.4e-4 for 10^8,
// negligible next to the sketch's 1.6% beyond DistinctExactMax. Below
// DistinctExactMax the count stays exact but for such a collision
// (probability below 128^2/2^64 = 8.9e-16).
//
// Representation of the registers: while at most hllSparseMax are non-zero the
// sketch keeps only those, as sorted (index, rho) pairs (4 bytes each in memory,
// about 3 encoded); past that, all m registers (4 KiB).
//
// Every choice of representation is a function of the set of values seen: the
// exact set while that set has at most DistinctExactMax values (every subset
// then has too), otherwise the registers of all of them (register max is
// associative), sparse or dense by their number of non-zero registers (which
// only grows). So the estimate and the encoding of a set of values are the same
// however it was built or merged.
const (
	hllP         = 12
	hllM         = 1 << hllP
	hllQ         = 64 - hllP
	hllSparseMax = hllM / 4
)

// DistinctExactMax is the number of distinct values up to which approx_distinct
// is exact (a sketch keeps the values' hashes until it has seen more).
const DistinctExactMax = 128

// hll is a HyperLogLog sketch. The zero hll is empty (exact mode).
type hll struct {
	exact  []uint64 // sorted distinct hashes while registers are not used
	sparse []uint32 // idx<<8 | rho, sorted by idx, rho > 0; nil while exact or once dense
	dense  []uint8  // hllM registers, nil while exact or sparse
}

// registers reports whether s keeps registers (more than DistinctExactMax
// distinct values seen) rather than the exact set of hashes.
func (s *hll) registers() bool { return s.sparse != nil || s.dense != nil }

// hashValue is the 64-bit hash of a numeric value: its float64 bits, with -0
// normalized to 0, through the murmur3 fmix64 finalizer (a bijection, so
// distinct values never collide in the hash itself).
func hashValue(v float64) uint64 {
	if v == 0 {
		v = 0 // -0 and 0 are one value
	}
	h := math.Float64bits(v)
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// add folds the value v into the sketch.
func (s *hll) add(v float64) {
	h := hashValue(v)
	if s.registers() {
		s.addHash(h)
		return
	}
	i, found := slices.BinarySearch(s.exact, h)
	if found {
		return
	}
	s.exact = slices.Insert(s.exact, i, h)
	if len(s.exact) > DistinctExactMax {
		s.toRegisters()
	}
}

// addHash raises the register of hash h (register mode).
func (s *hll) addHash(h uint64) {
	idx := uint32(h >> hllQ)
	rho := uint8(min(bits.LeadingZeros64(h<<hllP)+1, hllQ+1))
	s.set(idx, rho)
}

// toRegisters moves from the exact set to the registers of its hashes.
func (s *hll) toRegisters() {
	hashes := s.exact
	s.exact = nil
	s.sparse = make([]uint32, 0, len(hashes))
	for _, h := range hashes {
		s.addHash(h)
	}
}

// set raises register idx to rho.
func (s *hll) set(idx uint32, rho uint8) {
	if s.dense != nil {
		if rho > s.dense[idx] {
			s.dense[idx] = rho
		}
		return
	}
	i, found := slices.BinarySearchFunc(s.sparse, idx, func(e, idx uint32) int { return int(e>>8) - int(idx) })
	if found {
		if rho > uint8(s.sparse[i]) {
			s.sparse[i] = idx<<8 | uint32(rho)
		}
		return
	}
	s.sparse = slices.Insert(s.sparse, i, idx<<8|uint32(rho))
	if len(s.sparse) > hllSparseMax {
		s.toDense()
	}
}

func (s *hll) toDense() {
	s.dense = make([]uint8, hllM)
	for _, e := range s.sparse {
		s.dense[e>>8] = uint8(e)
	}
	s.sparse = nil
}

// merge folds o into s: the union of the exact sets while it stays within
// DistinctExactMax, otherwise the register-wise max.
func (s *hll) merge(o *hll) {
	if !o.registers() {
		if s.registers() {
			for _, h := range o.exact {
				s.addHash(h)
			}
			return
		}
		s.exact = mergeHashes(s.exact, o.exact)
		if len(s.exact) > DistinctExactMax {
			s.toRegisters()
		}
		return
	}
	if !s.registers() {
		s.toRegisters()
	}
	if o.dense != nil {
		if s.dense == nil {
			s.toDense()
		}
		for i, r := range o.dense {
			if r > s.dense[i] {
				s.dense[i] = r
			}
		}
		return
	}
	if s.dense != nil {
		for _, e := range o.sparse {
			s.set(e>>8, uint8(e))
		}
		return
	}
	s.sparse = mergeSparse(s.sparse, o.sparse)
	if len(s.sparse) > hllSparseMax {
		s.toDense()
	}
}

// mergeSparse returns the union of two sorted sparse register lists, keeping
// the larger rho of a shared index. It reuses a's storage when it has room
// (merging from the back, so no element is overwritten before it is read), and
// otherwise grows it to at most twice the result.
func mergeSparse(a, b []uint32) []uint32 {
	n := len(a)
	for i, j := 0, 0; j < len(b); {
		switch {
		case i < len(a) && a[i]>>8 < b[j]>>8:
			i++
		case i < len(a) && a[i]>>8 == b[j]>>8:
			i, j = i+1, j+1
		default:
			n, j = n+1, j+1
		}
	}
	out := a[:cap(a)]
	if cap(a) < n {
		out = make([]uint32, n, max(n, 2*len(a))) // amortized: a read merges many tiles
		copy(out, a)
	}
	out = out[:n]
	i, j := len(a)-1, len(b)-1
	for k := n - 1; j >= 0; k-- {
		switch {
		case i >= 0 && out[i]>>8 > b[j]>>8:
			out[k], i = out[i], i-1
		case i >= 0 && out[i]>>8 == b[j]>>8:
			out[k] = max(out[i], b[j])
			i, j = i-1, j-1
		default:
			out[k], j = b[j], j-1
		}
	}
	return out
}

// mergeHashes returns the union of two sorted hash sets, inserting b's new
// hashes into a (a is the receiver's own; b has at most DistinctExactMax).
func mergeHashes(a, b []uint64) []uint64 {
	for _, h := range b {
		if i, found := slices.BinarySearch(a, h); !found {
			a = slices.Insert(a, i, h)
		}
	}
	return a
}

// clone returns a deep copy of s.
func (s *hll) clone() *hll {
	return &hll{exact: slices.Clone(s.exact), sparse: slices.Clone(s.sparse), dense: slices.Clone(s.dense)}
}

// nonZero is the number of non-zero registers.
func (s *hll) nonZero() int {
	if s.dense == nil {
		return len(s.sparse)
	}
	n := 0
	for _, r := range s.dense {
		if r != 0 {
			n++
		}
	}
	return n
}

// estimate is the number of distinct values: exact while s keeps the hashes,
// otherwise Ertl's improved raw estimator over the register histogram.
func (s *hll) estimate() float64 {
	if !s.registers() {
		return float64(len(s.exact))
	}
	var c [hllQ + 2]int
	if s.dense != nil {
		for _, r := range s.dense {
			c[r]++
		}
	} else {
		c[0] = hllM - len(s.sparse)
		for _, e := range s.sparse {
			c[uint8(e)]++
		}
	}
	if c[0] == hllM {
		return 0
	}
	const m = float64(hllM)
	z := m * hllTau(1-float64(c[hllQ+1])/m)
	for k := hllQ; k >= 1; k-- {
		z = 0.5 * (z + float64(c[k]))
	}
	z += m * hllSigma(float64(c[0])/m)
	return m * m / (2 * math.Ln2 * z)
}

// hllSigma is Ertl's sigma(x) = x + sum_{k>=1} x^(2^k) 2^(k-1), for 0 <= x < 1.
func hllSigma(x float64) float64 {
	if x == 1 {
		return math.Inf(1)
	}
	y, z := 1.0, x
	for {
		x *= x
		prev := z
		z += x * y
		y += y
		if z == prev {
			return z
		}
	}
}

// hllTau is Ertl's tau(x) = (1 - x - sum_{k>=1} (1 - x^(2^-k))^2 2^-k) / 3.
func hllTau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for {
		x = math.Sqrt(x)
		prev := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if z == prev {
			return z / 3
		}
	}
}
