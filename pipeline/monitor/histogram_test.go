package monitor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestHistogramMatchesTheValues: each bin holds the values between its
// edges, counted directly, except values within the sketch's 1% of an
// edge, which may land on either side.
func TestHistogramMatchesTheValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	s := NewStats()
	var xs []float64
	for i := range 20000 {
		x := rng.Float64() * 300 // two populations with a gap between them
		if i%3 == 0 {
			x = 600 + rng.Float64()*400
		}
		xs = append(xs, x)
		s.AddValue(x)
		if i%10 == 0 {
			s.AddNull()
		}
	}
	h, ok := s.Histogram(HistogramBins)
	if !ok || len(h.Counts) != HistogramBins {
		t.Fatalf("histogram %+v ok %v", h, ok)
	}
	sum := s.Summary()
	if h.Lo != sum.Quantiles["p1"] || h.Hi != sum.Quantiles["p99"] {
		t.Fatalf("range %v..%v, want p1 %v .. p99 %v", h.Lo, h.Hi, sum.Quantiles["p1"], sum.Quantiles["p99"])
	}
	w := (h.Hi - h.Lo) / HistogramBins
	edge := func(i int) float64 { return h.Lo + float64(i)*w }
	nearAny := map[int]bool{} // values within 1% of some edge
	for i := range HistogramBins {
		want, tol := 0.0, 0.0
		for j, x := range xs {
			nearEdge := math.Abs(x-edge(i)) <= 0.0101*math.Abs(x) || math.Abs(x-edge(i+1)) <= 0.0101*math.Abs(x)
			if nearEdge {
				nearAny[j] = true
			}
			in := x >= edge(i) && (x < edge(i+1) || i == HistogramBins-1 && x <= h.Hi)
			if nearEdge {
				tol++
			} else if in {
				want++
			}
		}
		if got := h.Counts[i]; got < want || got > want+tol {
			t.Errorf("bin %d [%.2f, %.2f): %v values, want %v to %v", i, edge(i), edge(i+1), got, want, want+tol)
		}
	}
	if len(nearAny) > len(xs)*3/10 {
		t.Fatalf("the edges' 1%% covers %d of %d values: the comparison says little", len(nearAny), len(xs))
	}
	// The gap between the two populations (300 to 600) shows as blanks.
	line := []rune(h.Sparkline())
	if len(line) != HistogramBins {
		t.Fatalf("sparkline %q: %d characters, want %d", string(line), len(line), HistogramBins)
	}
	for i, r := range line {
		if lo, hi := edge(i), edge(i+1); lo > 303 && hi < 594 && r != ' ' || hi < 297 && r == ' ' {
			t.Errorf("sparkline %q: bin %d [%.0f, %.0f) is %q", string(line), i, lo, hi, r)
		}
	}
}

func TestSparkline(t *testing.T) {
	for name, c := range map[string]struct {
		counts []float64
		want   string
	}{
		"heights proportional, empty bins blank": {[]float64{0, 1, 2, 3, 4, 5, 6, 7, 8}, " ▁▂▃▄▅▆▇█"},
		"any count above 0 shows":                {[]float64{1, 1000, 0}, "▁█ "},
		"all empty":                              {[]float64{0, 0}, "  "},
	} {
		if got := (Histogram{Counts: c.counts}).Sparkline(); got != c.want {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
	// One value: p1 = p99, one full bin.
	s := statsOf(3, 3, 3)
	if h, ok := s.Histogram(HistogramBins); !ok || len(h.Counts) != 1 || h.Counts[0] != 3 || h.Sparkline() != "█" {
		t.Errorf("constant values: %+v", h)
	}
	if _, ok := NewStats().Histogram(HistogramBins); ok {
		t.Errorf("a histogram without values")
	}
}
