// Package monitor computes feature statistics and drift: the same Stats
// summarize the values a backfill writes (the training baseline, recorded in
// the dataset manifest) and the values the workers publish (live), and PSI
// and KS compare the two.
//
// Stats are mergeable: count, nulls, Welford's mean and M2 (merged with
// Chan's formula), min, max and a DDSketch (github.com/DataDog/sketches-go)
// of the non-null values with 1% relative accuracy, so quantiles are within
// 1% of a true value of the data. List-valued features (first_k, last_k)
// add the distribution of list lengths and the most frequent elements
// (TopValues), and their moments, quantiles and drift are over the
// elements; string-valued features have top values only (AddString). A
// Stats is not safe for concurrent use.
package monitor

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// RelativeAccuracy of every sketch: a quantile is within 1% of a value of
// the data. Sketches merge only with the same accuracy.
const RelativeAccuracy = 0.01

// maxBins bounds a sketch's bins per sign (the lowest collapse first):
// 2048 bins at 1% cover about 17 orders of magnitude, about 16 KiB at most.
const maxBins = 2048

// Quantiles are the quantiles Summary reports (p1, p5, p10, p25, p50, p75,
// p90, p95, p99).
var Quantiles = []float64{0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99}

// Kind is what a Stats summarizes, set by the first non-null value added
// (or merged): "number", "list" or "string"; "" while it has none.
type Kind string

// The kinds of Stats.
const (
	KindNumber Kind = "number"
	KindList   Kind = "list"
	KindString Kind = "string"
)

// Stats summarize a stream of feature values, some of them null (an empty
// window without a default, NOT_FOUND, a missing field). One Stats takes
// one kind of value (see Kind): numbers (AddValue), lists of numbers
// (AddList) or strings (AddString); Merge refuses to mix them.
type Stats struct {
	kind  Kind
	count int64 // values, nulls included (a list counts once)
	nulls int64
	// values is the number of numbers in the moments and the sketch: the
	// non-null values of a number feature, the elements of a list
	// feature's lists, none for strings.
	values int64
	// lengths has one value per non-null list: its length (KindList).
	lengths *Stats
	// top counts the most frequent list elements (KindList) or strings
	// (KindString).
	top  *TopValues
	mean float64
	m2   float64
	min  float64
	max  float64
	// sketch holds the non-null, finite values.
	sketch *ddsketch.DDSketch
	// thinAfter, when > 0, makes AddValue sample numbers past that many
	// (see newThinnedStats); 0: every number is added.
	thinAfter int64
}

// logMapping is the index mapping of every sketch (immutable, shared). Its
// error (only for an accuracy outside (0, 1)) is checked by a test.
var logMapping, logMappingErr = mapping.NewLogarithmicMapping(RelativeAccuracy)

// NewStats returns empty statistics.
func NewStats() *Stats {
	return &Stats{sketch: ddsketch.NewDDSketch(logMapping, store.NewCollapsingLowestDenseStore(maxBins), store.NewCollapsingLowestDenseStore(maxBins))}
}

// newThinnedStats returns empty statistics that add every number value
// until they hold k (count - nulls >= k), then each next one with
// probability 1/w and weight w, w the smallest power of two above
// (count - nulls) / k: an unbiased sample (the weights add up to the number
// of values in expectation) of at least about k values, whose effective
// size (Kish's, (Σw)²/Σw²) stays above 1.3k however many are added, so
// that adding a value past k costs a counter and a random draw rather than
// a sketch insert. Count, nulls, the null rate, min and max of the kept
// values are exact for counts and nulls; the mean, standard deviation,
// quantiles and drift are estimates from the sample (see ServedLive for the
// error). Lists and strings are not sampled.
func newThinnedStats(k int64) *Stats {
	s := NewStats()
	s.thinAfter = k
	return s
}

// Add adds one value; nil is a null. NaN and infinities count as nulls.
// Cost: O(1), no allocation once the sketch's bins cover the value.
func (s *Stats) Add(v *float64) {
	if v == nil {
		s.AddNull()
		return
	}
	s.AddValue(*v)
}

// AddNull adds a null value.
func (s *Stats) AddNull() {
	s.count++
	s.nulls++
}

// AddValue adds a non-null value (NaN and infinities count as nulls).
func (s *Stats) AddValue(x float64) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		s.AddNull()
		return
	}
	s.setKind(KindNumber)
	s.count++
	if n := s.count - s.nulls; s.thinAfter > 0 && n > s.thinAfter {
		// weight: the smallest power of two above (n-1)/thinAfter
		w := int64(1) << bits.Len64(uint64((n-1)/s.thinAfter))
		if rand.Uint64()&uint64(w-1) != 0 {
			return
		}
		s.addWeighted(x, w)
		return
	}
	s.addNumber(x)
}

// setKind sets the kind on the first non-null value; a value of another
// kind later is still counted (callers keep one kind per feature).
func (s *Stats) setKind(k Kind) {
	if s.kind == "" {
		s.kind = k
	}
}

// addNumber adds x to the moments and the sketch (not to count).
func (s *Stats) addNumber(x float64) {
	n := s.values
	if n == 0 {
		s.min, s.max = x, x
	} else {
		s.min, s.max = min(s.min, x), max(s.max, x)
	}
	s.values++
	d := x - s.mean
	s.mean += d / float64(n+1)
	s.m2 += d * (x - s.mean)
	_ = s.sketch.Add(x) // fails only for values the mapping cannot index (beyond ±1e307)
}

// addWeighted adds x with weight w (it stands for w values) to the
// moments and the sketch: West's weighted form of Welford's update.
func (s *Stats) addWeighted(x float64, w int64) {
	n := s.values
	if n == 0 {
		s.min, s.max = x, x
	} else {
		s.min, s.max = min(s.min, x), max(s.max, x)
	}
	s.values += w
	d := x - s.mean
	s.mean += d * float64(w) / float64(s.values)
	s.m2 += float64(w) * d * (x - s.mean)
	_ = s.sketch.AddWithCount(x, float64(w))
}

// AddList adds one list value (ok false: a null, e.g. an empty window):
// its length to the length distribution, its elements to the moments,
// quantiles and top values (NaN and infinite elements are left out of the
// moments and quantiles, counted in the length and the top values). Cost:
// O(len(l)) sketch inserts and map increments.
func (s *Stats) AddList(l []float64, ok bool) {
	if !ok {
		s.AddNull()
		return
	}
	s.setKind(KindList)
	s.count++
	if s.lengths == nil {
		s.lengths = NewStats()
	}
	s.lengths.AddValue(float64(len(l)))
	if s.top == nil {
		s.top = NewTopValues()
	}
	for _, x := range l {
		s.top.Add(NumberKey(x))
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			s.addNumber(x)
		}
	}
}

// AddString adds one string value (ok false: a null) to the top values:
// the statistics of a string-valued feature are its count, null rate and
// most frequent values (no moments, quantiles or PSI).
func (s *Stats) AddString(v string, ok bool) {
	if !ok {
		s.AddNull()
		return
	}
	s.setKind(KindString)
	s.count++
	if s.top == nil {
		s.top = NewTopValues()
	}
	s.top.Add(v)
}

// AddStringList adds one list of strings (first_k, last_k of a string
// field; ok false: a null): a list value (KindList) with its length and
// its elements in the top values, no moments or quantiles (there are no
// numbers). Cost: O(len(l)) map increments.
func (s *Stats) AddStringList(l []string, ok bool) {
	if !ok {
		s.AddNull()
		return
	}
	s.setKind(KindList)
	s.count++
	if s.lengths == nil {
		s.lengths = NewStats()
	}
	s.lengths.AddValue(float64(len(l)))
	if s.top == nil {
		s.top = NewTopValues()
	}
	for _, x := range l {
		s.top.Add(x)
	}
}

// Kind is the kind of values s summarizes ("" before the first non-null
// one).
func (s *Stats) Kind() Kind { return s.kind }

// Top returns the n most frequent list elements or strings (nil for
// numbers), with the largest undercount of their counts (TopValues).
func (s *Stats) Top(n int) (top []TopValue, maxUndercount int64) {
	if s.top == nil {
		return nil, 0
	}
	return s.top.Top(n), s.top.Error()
}

// Merge adds o's values to s. Statistics of different kinds (a list's
// and a number's) do not merge.
func (s *Stats) Merge(o *Stats) error {
	if s.kind != "" && o.kind != "" && s.kind != o.kind {
		return fmt.Errorf("merge feature statistics: %s values with %s values (a feature whose type changed needs a new version)", s.kind, o.kind)
	}
	s.setKind(o.kind)
	if o.lengths != nil {
		if s.lengths == nil {
			s.lengths = NewStats()
		}
		if err := s.lengths.Merge(o.lengths); err != nil {
			return err
		}
	}
	if o.top != nil {
		if s.top == nil {
			s.top = NewTopValues()
		}
		s.top.Merge(o.top)
	}
	na, nb := float64(s.values), float64(o.values)
	switch {
	case nb == 0:
	case na == 0:
		s.mean, s.m2, s.min, s.max = o.mean, o.m2, o.min, o.max
	default:
		d := o.mean - s.mean
		n := na + nb
		s.mean += d * nb / n
		s.m2 += o.m2 + d*d*na*nb/n
		s.min, s.max = min(s.min, o.min), max(s.max, o.max)
	}
	s.count += o.count
	s.nulls += o.nulls
	s.values += o.values
	if err := s.sketch.MergeWith(o.sketch); err != nil {
		return fmt.Errorf("merge feature statistics: %w", err)
	}
	return nil
}

// Count is the number of values, nulls included.
func (s *Stats) Count() int64 { return s.count }

// NullRate is the fraction of null values (0 without values).
func (s *Stats) NullRate() float64 {
	if s.count == 0 {
		return 0
	}
	return float64(s.nulls) / float64(s.count)
}

// Summary is the readable form of Stats.
type Summary struct {
	// Kind is "number", "list" or "string"; absent before any non-null
	// value (and in statistics written before lists had any).
	Kind     Kind    `json:"kind,omitempty"`
	Count    int64   `json:"count"`
	Nulls    int64   `json:"nulls"`
	NullRate float64 `json:"null_rate"`
	// Elements is the number of list elements (lists only): what the
	// moments, quantiles and drift of a list feature are over.
	Elements int64 `json:"elements,omitempty"`
	// Length is the distribution of the non-null lists' lengths (lists
	// only).
	Length *Summary `json:"length,omitempty"`
	// Top is the TopShown most frequent list elements or strings, most
	// frequent first; TopError is the largest undercount of their counts
	// (0: exact).
	Top      []TopValue `json:"top,omitempty"`
	TopError int64      `json:"top_error,omitempty"`
	// The rest are over the non-null numbers (a list's elements); absent
	// without any.
	Mean   *float64 `json:"mean,omitempty"`
	Stddev *float64 `json:"stddev,omitempty"` // sample standard deviation (n-1)
	Min    *float64 `json:"min,omitempty"`
	Max    *float64 `json:"max,omitempty"`
	// Quantiles by name (p1 ... p99), within 1% relative accuracy.
	Quantiles map[string]float64 `json:"quantiles,omitempty"`
}

// Summary returns the statistics in readable form.
func (s *Stats) Summary() Summary {
	out := Summary{Kind: s.kind, Count: s.count, Nulls: s.nulls, NullRate: s.NullRate()}
	if s.kind == KindList {
		out.Elements = s.values
	}
	if s.lengths != nil {
		l := s.lengths.Summary()
		out.Length = &l
	}
	out.Top, out.TopError = s.Top(TopShown)
	n := s.values
	if n == 0 {
		return out
	}
	mean, lo, hi, sd := s.mean, s.min, s.max, 0.0
	if n > 1 {
		sd = math.Sqrt(s.m2 / float64(n-1))
	}
	out.Mean, out.Min, out.Max, out.Stddev = &mean, &lo, &hi, &sd
	out.Quantiles = map[string]float64{}
	for _, q := range Quantiles {
		v, err := s.sketch.GetValueAtQuantile(q)
		if err == nil {
			out.Quantiles[fmt.Sprintf("p%d", int(math.Round(q*100)))] = v
		}
	}
	return out
}

// statsJSON is the serialized form: the summary for people, the exact
// moments and the sketch (base64 of its binary encoding) to merge and
// compare again.
type statsJSON struct {
	Summary
	M2     float64 `json:"m2"`
	Sketch string  `json:"sketch"`
	// Lengths and TopValues restore a list's or string's parts.
	Lengths   *Stats   `json:"lengths,omitempty"`
	TopValues *topJSON `json:"top_values,omitempty"`
}

// MarshalJSON encodes the summary with what restores the Stats exactly.
func (s *Stats) MarshalJSON() ([]byte, error) {
	var b []byte
	s.sketch.Encode(&b, false)
	j := statsJSON{Summary: s.Summary(), M2: s.m2, Sketch: base64.StdEncoding.EncodeToString(b), Lengths: s.lengths}
	if s.top != nil {
		j.TopValues = s.top.toJSON()
	}
	return json.Marshal(j)
}

// UnmarshalJSON restores Stats written by MarshalJSON.
func (s *Stats) UnmarshalJSON(data []byte) error {
	var j statsJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	b, err := base64.StdEncoding.DecodeString(j.Sketch)
	if err != nil {
		return fmt.Errorf("feature statistics sketch: %w", err)
	}
	sk, err := ddsketch.DecodeDDSketch(b, store.DefaultProvider, nil)
	if err != nil {
		return fmt.Errorf("feature statistics sketch: %w", err)
	}
	fresh := NewStats()
	if err := fresh.sketch.MergeWith(sk); err != nil {
		return fmt.Errorf("feature statistics sketch (accuracy other than %v?): %w", RelativeAccuracy, err)
	}
	*s = *fresh
	s.kind, s.count, s.nulls, s.m2 = j.Kind, j.Count, j.Nulls, j.M2
	switch j.Kind {
	case KindList:
		s.values = j.Elements
	case KindString:
	default: // numbers; statistics written before kinds were numbers too
		s.values = j.Count - j.Nulls
		if s.values > 0 {
			s.kind = KindNumber
		}
	}
	s.lengths = j.Lengths
	if j.TopValues != nil {
		s.top = topFromJSON(j.TopValues)
	}
	if j.Mean != nil {
		s.mean = *j.Mean
	}
	if j.Min != nil {
		s.min, s.max = *j.Min, *j.Max
	}
	return nil
}
