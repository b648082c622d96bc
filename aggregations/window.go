package aggregations

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Durations in milliseconds.
const (
	Second int64 = 1000
	Minute       = 60 * Second
	Hour         = 60 * Minute
	Day          = 24 * Hour
)

// NoClock is the clock value for replays and backfills: Apply puts nothing in
// Pending and drops nothing, and Expire removes nothing.
const NoClock int64 = math.MaxInt64

// The sentinels' messages without the package prefix, for WindowError.Msg.
const (
	invalidDuration = "invalid duration"
	invalidWindow   = "invalid window"
)

// Sentinel errors wrapped by the parsers, for callers that branch on them.
var (
	ErrInvalidDuration = errors.New("aggregations: " + invalidDuration)
	ErrInvalidWindow   = errors.New("aggregations: " + invalidWindow)
)

// WindowError is the error ParseWindow returns. It wraps ErrInvalidDuration or
// ErrInvalidWindow and says which setting to change, so that a caller reporting
// against its own names for the settings (a file and line, a flag) needs
// neither to parse the window again nor to pick apart the message.
type WindowError struct {
	// Part is the setting to change: "window", or "hop" when a hop was given
	// and the window itself is valid. A window that is not a whole multiple of
	// the default hop blames "window" (there is no hop to change).
	Part string
	// Msg explains the problem without a package or setting prefix, e.g.
	// `invalid duration "30x": unknown unit 'x' (...)` or
	// "invalid window: hop 2h is longer than window 1h".
	Msg string
	// sentinel is ErrInvalidDuration or ErrInvalidWindow.
	sentinel error
}

// Error returns "aggregations: <part>: <msg>".
func (e *WindowError) Error() string { return "aggregations: " + e.Part + ": " + e.Msg }

// Unwrap returns ErrInvalidDuration or ErrInvalidWindow.
func (e *WindowError) Unwrap() error { return e.sentinel }

// lifetimeName is the window spelling for Size == 0.
const lifetimeName = "lifetime"

var durationUnits = [...]struct {
	suffix byte
	ms     int64
}{{'d', Day}, {'h', Hour}, {'m', Minute}, {'s', Second}}

// ParseDuration parses a positive whole number followed by one unit, s, m, h or d
// ("90s", "15m", "1h", "30d"), into milliseconds. Signs, fractions, compound
// durations ("1h30m"), other units and values that overflow int64 are errors
// wrapping ErrInvalidDuration.
func ParseDuration(s string) (int64, error) {
	ms, problem := parseDuration(s)
	if problem != "" {
		return 0, fmt.Errorf("%w %s", ErrInvalidDuration, problem)
	}
	return ms, nil
}

// parseDuration is ParseDuration, returning why s is invalid (the text after
// "invalid duration") instead of an error; problem is "" when s is valid.
func parseDuration(s string) (ms int64, problem string) {
	var unitMS int64
	bad := func(why string) (int64, string) {
		return 0, fmt.Sprintf("%q: %s (want a positive whole number with unit s, m, h or d, e.g. 15m or 30d)", s, why)
	}
	if len(s) < 2 {
		return bad("too short")
	}
	digits, unit := s[:len(s)-1], s[len(s)-1]
	for _, u := range durationUnits {
		if u.suffix == unit {
			unitMS = u.ms
		}
	}
	if unitMS == 0 {
		return bad(fmt.Sprintf("unknown unit %q", unit))
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return bad("not a whole number")
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt64/unitMS {
		return bad("too large")
	}
	if n == 0 {
		return bad("must be positive")
	}
	return n * unitMS, ""
}

// FormatDuration formats milliseconds with the largest unit that divides them
// exactly ("30d", "1h", "90s"), falling back to "ms". It is the inverse of
// ParseDuration for every duration ParseDuration accepts.
func FormatDuration(ms int64) string {
	if ms != 0 {
		for _, u := range durationUnits {
			if ms%u.ms == 0 {
				return strconv.FormatInt(ms/u.ms, 10) + string(u.suffix)
			}
		}
	}
	return strconv.FormatInt(ms, 10) + "ms"
}

// Window is an aggregation window: Size and Hop in milliseconds. Size == 0 means
// lifetime. A valid window (see Validate) has Hop > 0 and, when finite,
// Size % Hop == 0 (so Hop <= Size). Methods on an invalid window do not panic but
// their results are meaningless.
//
// A window also says which sketch, if any, its tiles' IRs keep: none for a
// window built as a literal or by ParseWindow, the kind's sketch for one
// returned by For. Every Series method takes the window, so the feature's kind
// reaches each place an IR is created (Apply, Read, Expire) without the Series
// having to remember it.
type Window struct {
	Size int64
	Hop  int64
	// sketch is the sketch the tiles' IRs keep (see For); zero: none.
	sketch sketchKind
	// quantile is the quantile an ApproxPercentile sketch answers (see For).
	quantile float64
	// k is the number of events a FirstK or LastK list keeps (see WithK).
	k int
}

// sketchKind names the sketch an IR keeps besides its exact fields.
type sketchKind uint8

const (
	noSketch sketchKind = iota
	hllSketch
	quantileSketch
	firstKList
	lastKList
	topKSketch

	// withStrings is a bit of sketch, not a sketch: the IRs also keep the
	// Str of their events (see WithStrings). A bit rather than a field keeps
	// Window at four integer words and a float, so that Apply's arguments
	// still fit the registers of Go's calling convention (a separate field
	// measured 10-15% slower on every kind in bench-apply).
	withStrings sketchKind = 0x80
	// withBuckets is a bit of sketch too: the IRs keep one sub-IR per
	// bucket (see WithBuckets and bucket.go).
	withBuckets sketchKind = 0x40
)

// For returns w set up for aggregation k: the tiles of an ApproxDistinct
// feature keep a HyperLogLog sketch, those of an ApproxPercentile feature a
// quantile sketch answering percentile (0 < percentile < 1; Validate checks
// it), those of FirstK and LastK the list of their k events (set k with
// WithK), those of TopK the counts of their values (see topk.go; set the k
// it answers with WithK). For every other kind it returns w without a sketch and ignores
// percentile: exact kinds cost no sketch.
func (w Window) For(k Kind, percentile float64) Window {
	w.sketch, w.quantile, w.k = noSketch, 0, 0
	switch k {
	case FirstK:
		w.sketch = firstKList
	case LastK:
		w.sketch = lastKList
	case ApproxDistinct:
		w.sketch = hllSketch
	case ApproxPercentile:
		w.sketch, w.quantile = quantileSketch, percentile
	case TopK:
		w.sketch = topKSketch
	}
	return w
}

// WithK returns w with the number of events the tiles of a FirstK or LastK
// window keep, or the number of values a TopK window answers (1 <= k <=
// MaxK; Validate checks it); other windows are returned unchanged.
// For(FirstK, LastK or TopK, ...) without WithK is invalid.
func (w Window) WithK(k int) Window {
	if sk := w.kind(); sk == firstKList || sk == lastKList || sk == topKSketch {
		w.k = k
	}
	return w
}

// WithStrings returns w with IRs that keep the Str of their events, for a
// Last, First, FirstK, LastK or TopK feature of a string field (read its
// values with FinalizeString, FinalizeStringList and FinalizeStringTopK). It costs a pointer per IR and
// the strings; For resets it. Windows without it ignore Event.Str.
func (w Window) WithStrings() Window {
	w.sketch |= withStrings
	return w
}

// Strings reports whether w was made WithStrings.
func (w Window) Strings() bool { return w.sketch&withStrings != 0 }

// WithBuckets returns w with IRs that keep one sub-IR per bucket (the
// events' Event.Bucket), for a feature with `bucket:` (read its value with
// FinalizeBuckets; see bucket.go for the bounds and the fold into
// OtherBucket). The sub-IRs keep what the rest of w asks for (a sketch,
// a k list, strings); the IR above them keeps only the exact fields of all
// its events. It costs a map and a sub-IR per bucket per tile; For resets
// it. Windows without it ignore Event.Bucket.
func (w Window) WithBuckets() Window {
	w.sketch |= withBuckets
	return w
}

// Buckets reports whether w was made WithBuckets.
func (w Window) Buckets() bool { return w.sketch&withBuckets != 0 }

// kind is the sketch w's IRs keep, without the withStrings and withBuckets bits.
func (w Window) kind() sketchKind { return w.sketch &^ (withStrings | withBuckets) }

// unbucketed is w without the withBuckets bit: the window of a bucket's sub-IR.
func (w Window) unbucketed() Window {
	w.sketch &^= withBuckets
	return w
}

// K is the number of events the tiles of a FirstK or LastK window keep, or
// the number of values a TopK window answers, 0 for any other window.
func (w Window) K() int { return w.k }

// Percentile is the quantile the tiles' quantile sketch answers: the
// percentile given to For(ApproxPercentile, percentile), 0 for any other window.
func (w Window) Percentile() float64 { return w.quantile }

// DefaultHop is the hop used when a feature does not set one (Chronon's rule):
// 1d for windows of 12d or more, 1h for 12h or more, otherwise 5m, but never more
// than the window itself (a 90s window hops by 90s). Lifetime (size 0) hops by 1d.
// A negative size returns 0, which no valid Window has.
func DefaultHop(size int64) int64 {
	switch {
	case size < 0:
		return 0
	case size == 0:
		return Day
	case size >= 12*Day:
		return Day
	case size >= 12*Hour:
		return Hour
	case size < 5*Minute:
		return size
	default:
		return 5 * Minute
	}
}

// ParseWindow parses a window ("30d", or "lifetime") and its hop ("1d"; "" means
// DefaultHop). A finite window must be a whole multiple of its hop. Errors are a
// *WindowError, which wraps ErrInvalidDuration or ErrInvalidWindow, names the
// setting to change and says what to change.
func ParseWindow(window, hop string) (Window, error) {
	var w Window
	if window != lifetimeName {
		size, problem := parseDuration(window)
		if problem != "" {
			return Window{}, durationError("window", fmt.Sprintf("%s (or %q)", problem, lifetimeName))
		}
		w.Size = size
	}
	if hop == "" {
		w.Hop = DefaultHop(w.Size)
		if problem := w.problem(); problem != "" {
			return Window{}, windowError("window", fmt.Sprintf("%s (with the default hop %s; set hop explicitly)", problem, FormatDuration(w.Hop)))
		}
		return w, nil
	}
	h, problem := parseDuration(hop)
	if problem != "" {
		return Window{}, durationError("hop", problem)
	}
	w.Hop = h
	if problem := w.problem(); problem != "" {
		return Window{}, windowError("hop", problem)
	}
	return w, nil
}

// durationError is a WindowError for a part that is not a duration; problem
// is what follows "invalid duration".
func durationError(part, problem string) *WindowError {
	return &WindowError{Part: part, Msg: invalidDuration + " " + problem, sentinel: ErrInvalidDuration}
}

// windowError is a WindowError for a window and hop that do not fit together;
// problem is what follows "invalid window: ".
func windowError(part, problem string) *WindowError {
	return &WindowError{Part: part, Msg: invalidWindow + ": " + problem, sentinel: ErrInvalidWindow}
}

// Validate reports why w cannot be used, wrapping ErrInvalidWindow, or nil.
func (w Window) Validate() error {
	if problem := w.problem(); problem != "" {
		return fmt.Errorf("%w: %s", ErrInvalidWindow, problem)
	}
	return nil
}

// problem is Validate's explanation (the text after "invalid window: "), or
// "" for a valid window.
func (w Window) problem() string {
	switch {
	case w.Size < 0:
		return fmt.Sprintf("size %dms is negative", w.Size)
	case w.Hop <= 0:
		return fmt.Sprintf("hop %dms must be positive", w.Hop)
	case w.kind() == quantileSketch && !(w.quantile > 0 && w.quantile < 1):
		return fmt.Sprintf("percentile %v must be between 0 and 1 (exclusive)", w.quantile)
	case (w.kind() == firstKList || w.kind() == lastKList || w.kind() == topKSketch) && (w.k < 1 || w.k > MaxK):
		return fmt.Sprintf("k %d must be between 1 and %d", w.k, MaxK)
	case w.Size == 0:
		return ""
	case w.Hop > w.Size:
		return fmt.Sprintf("hop %s is longer than window %s", FormatDuration(w.Hop), FormatDuration(w.Size))
	case w.Size%w.Hop != 0:
		return fmt.Sprintf("window %s is not a whole multiple of hop %s", FormatDuration(w.Size), FormatDuration(w.Hop))
	}
	return ""
}

// Lifetime reports whether w takes every event before the read time (Size == 0).
func (w Window) Lifetime() bool { return w.Size == 0 }

// Start is the inclusive lower bound of the window read as of T:
// floor(T - Size, Hop), or math.MinInt64 for lifetime windows. The exclusive upper
// bound is T itself.
func (w Window) Start(T int64) int64 {
	if w.Lifetime() {
		return math.MinInt64
	}
	return floorTo(subSat(T, w.Size), w.Hop)
}

// TileStart is the start of the hop-aligned tile holding ts: floor(ts, Hop).
func (w Window) TileStart(ts int64) int64 { return floorTo(ts, w.Hop) }

// Horizon is the oldest tile start worth keeping at wall-clock now. For a finite
// window it is Start(now) - Hop: one hop of slack below the oldest tile any read at
// T >= now can touch, for readers whose clock lags a little. For a lifetime window
// it is TileStart(now) - 2*Hop: the two recent hop tiles (and the current one) stay
// separate; older tiles are folded into Series.Base.
func (w Window) Horizon(now int64) int64 {
	if w.Lifetime() {
		return subSat(w.TileStart(now), 2*w.Hop)
	}
	return subSat(w.Start(now), w.Hop)
}

// String formats w as "30d/1d" or "lifetime/1d".
func (w Window) String() string {
	size := lifetimeName
	if !w.Lifetime() {
		size = FormatDuration(w.Size)
	}
	return size + "/" + FormatDuration(w.Hop)
}

// floorTo rounds t down to a multiple of step (a true floor, also for negative t),
// saturating at math.MinInt64. A step <= 0 returns t unchanged.
func floorTo(t, step int64) int64 {
	if step <= 0 {
		return t
	}
	m := t % step
	if m < 0 {
		m += step
	}
	r := t - m
	if r > t { // wrapped below math.MinInt64
		return math.MinInt64
	}
	return r
}

// subSat returns a - b for b >= 0, saturating at math.MinInt64.
func subSat(a, b int64) int64 {
	r := a - b
	if r > a {
		return math.MinInt64
	}
	return r
}
