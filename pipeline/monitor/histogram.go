package monitor

import (
	"math"
	"strings"
)

// HistogramBins is the number of bins of Histogram in reports and of the
// sparkline `featurepipe monitor` draws.
const HistogramBins = 16

// Histogram is the distribution of the non-null values between their p1
// and p99 in equal-width bins: a picture of the quantiles that a table of
// them does not give. Values below p1 or above p99 are left out, so that
// a few outliers do not squeeze the rest into one bin.
type Histogram struct {
	Lo     float64   `json:"lo"` // p1
	Hi     float64   `json:"hi"` // p99
	Counts []float64 `json:"counts"`
}

// Histogram returns s's histogram in bins equal-width bins from p1 to p99
// (bin i holds Lo + i*w <= v < Lo + (i+1)*w, the last one Hi too); one bin
// when p1 equals p99. Counts come from the sketch's bins, so a value may
// land in a neighbouring bin when it is within the sketch's 1% of a bin
// edge. ok is false without non-null values. Cost: one pass over the
// sketch's bins.
func (s *Stats) Histogram(bins int) (h Histogram, ok bool) {
	if s == nil || s.sketch.IsEmpty() || bins <= 0 {
		return Histogram{}, false
	}
	lo, err1 := s.sketch.GetValueAtQuantile(0.01)
	hi, err2 := s.sketch.GetValueAtQuantile(0.99)
	if err1 != nil || err2 != nil {
		return Histogram{}, false
	}
	if hi <= lo {
		bins = 1
	}
	h = Histogram{Lo: lo, Hi: hi, Counts: make([]float64, bins)}
	w := (hi - lo) / float64(bins)
	s.sketch.ForEach(func(v, c float64) bool {
		if v < lo || v > hi {
			return false
		}
		i := bins - 1
		if w > 0 {
			i = min(int((v-lo)/w), bins-1)
		}
		h.Counts[i] += c
		return false
	})
	return h, true
}

// sparkLevels are the block characters of a sparkline, lowest first.
var sparkLevels = []rune("▁▂▃▄▅▆▇█")

// Sparkline draws the counts as one character each: a space for an empty
// bin, else one of eight block heights, the highest for the largest count
// (heights proportional to the counts, the lowest for any count above 0).
func (h Histogram) Sparkline() string {
	var top float64
	for _, c := range h.Counts {
		top = max(top, c)
	}
	var b strings.Builder
	for _, c := range h.Counts {
		if c <= 0 || top <= 0 {
			b.WriteByte(' ')
			continue
		}
		level := int(math.Ceil(c/top*float64(len(sparkLevels)))) - 1
		b.WriteRune(sparkLevels[max(0, min(level, len(sparkLevels)-1))])
	}
	return b.String()
}
