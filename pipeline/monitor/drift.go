package monitor

import (
	"math"
	"sort"
)

// PSIBins is the number of bins PSI uses: the baseline's deciles.
const PSIBins = 10

// psiSmoothing is the pseudo-count added to every bin of both distributions
// (Laplace smoothing), so that a bin empty on one side gives a large but
// finite term instead of an infinite one.
const psiSmoothing = 0.5

// PSI is the population stability index of live against baseline over
// PSIBins bins bounded by the baseline's deciles (a value equal to a bound
// falls in the lower bin), on the non-null values: sum over bins of
// (l - b) * ln(l / b), with l and b the smoothed fractions of live and
// baseline values in the bin. 0 for identical distributions; a common
// reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
// ok is false when either side has no non-null value. Cost: one pass over
// both sketches' bins.
func PSI(baseline, live *Stats) (psi float64, ok bool) {
	if baseline.sketch.IsEmpty() || live.sketch.IsEmpty() {
		return 0, false
	}
	edges := make([]float64, 0, PSIBins-1)
	for i := 1; i < PSIBins; i++ {
		v, err := baseline.sketch.GetValueAtQuantile(float64(i) / PSIBins)
		if err != nil {
			return 0, false
		}
		edges = append(edges, v)
	}
	return psiOfCounts(binCounts(baseline, edges), binCounts(live, edges)), true
}

// binCounts counts s's sketched values per bin: bin i holds the values v
// with edges[i-1] < v <= edges[i] (the last bin everything above).
func binCounts(s *Stats, edges []float64) []float64 {
	counts := make([]float64, len(edges)+1)
	s.sketch.ForEach(func(v, c float64) bool {
		counts[sort.SearchFloat64s(edges, v)] += c
		return false
	})
	return counts
}

// psiOfCounts is PSI over per-bin counts of the baseline and live values,
// each smoothed by psiSmoothing.
func psiOfCounts(base, live []float64) float64 {
	var nb, nl float64
	for i := range base {
		nb += base[i] + psiSmoothing
		nl += live[i] + psiSmoothing
	}
	psi := 0.0
	for i := range base {
		b := (base[i] + psiSmoothing) / nb
		l := (live[i] + psiSmoothing) / nl
		psi += (l - b) * math.Log(l/b)
	}
	return psi
}

// KS is the two-sample Kolmogorov-Smirnov statistic of the non-null
// values: the largest distance between the two empirical distribution
// functions, in [0, 1], evaluated at every sketch bin (so values within 1%
// of each other count as equal). ok is false when either side has no
// non-null value.
func KS(baseline, live *Stats) (ks float64, ok bool) {
	if baseline.sketch.IsEmpty() || live.sketch.IsEmpty() {
		return 0, false
	}
	return ksOfPoints(points(baseline), points(live)), true
}

type point struct{ v, c float64 }

func points(s *Stats) []point {
	var out []point
	s.sketch.ForEach(func(v, c float64) bool {
		out = append(out, point{v, c})
		return false
	})
	sort.Slice(out, func(i, j int) bool { return out[i].v < out[j].v })
	return out
}

// ksOfPoints is the KS statistic of two weighted samples sorted by value.
func ksOfPoints(a, b []point) float64 {
	var na, nb float64
	for _, p := range a {
		na += p.c
	}
	for _, p := range b {
		nb += p.c
	}
	var ca, cb, d float64
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		// Step both CDFs past the next value (all of its weight at once).
		var v float64
		switch {
		case j >= len(b) || i < len(a) && a[i].v <= b[j].v:
			v = a[i].v
		default:
			v = b[j].v
		}
		for i < len(a) && a[i].v == v {
			ca += a[i].c
			i++
		}
		for j < len(b) && b[j].v == v {
			cb += b[j].c
			j++
		}
		d = max(d, math.Abs(ca/na-cb/nb))
	}
	return d
}
