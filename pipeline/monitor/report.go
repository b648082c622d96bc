package monitor

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Snapshot is a worker's statistics as GET /v1/stats serves them (on the
// worker's --metrics address): per feature version, the window's mergeable
// statistics and its baseline's, so that `featurepipe monitor` can merge
// several workers' and compare them.
type Snapshot struct {
	Window string `json:"window"`
	// LongWindow is LiveOptions.LongWindow (absent when none is kept).
	LongWindow string             `json:"long_window,omitempty"`
	Features   []FeatureSnapshot  `json:"features"`
	TakenAt    time.Time          `json:"taken_at"`
	Freshness  map[string]float64 `json:"freshness_seconds,omitempty"` // by feature id; set by the worker
}

// FeatureSnapshot is one version's statistics.
type FeatureSnapshot struct {
	ID string `json:"id"` // name@version
	// Window is nil when the version had values in the long window only.
	Window *Stats `json:"window"`
	// Long is the statistics over the snapshot's LongWindow.
	Long     *Stats    `json:"long_window,omitempty"`
	Baseline *Baseline `json:"baseline,omitempty"`
	// Week is the last 24 hours and the same hours a week earlier
	// (LiveOptions.Week), when kept and either has values.
	Week *WeekSnapshot `json:"week,omitempty"`
}

// MarshalJSON writes a baseline as its name and statistics.
func (b Baseline) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name  string `json:"name"`
		Stats *Stats `json:"stats"`
	}{b.Name, b.Stats})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (b *Baseline) UnmarshalJSON(data []byte) error {
	var v struct {
		Name  string `json:"name"`
		Stats *Stats `json:"stats"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	b.Name, b.Stats = v.Name, v.Stats
	return nil
}

// Snapshot returns the current window (and long window) statistics of
// every version with values in either, sorted by id.
func (l *Live) Snapshot() Snapshot {
	now := l.o.Now()
	s := Snapshot{Window: l.o.Window.String(), TakenAt: now.UTC()}
	if l.o.LongWindow > 0 {
		s.LongWindow = l.o.LongWindow.String()
	}
	l.mu.Lock()
	for id, f := range l.features {
		w, long := l.windowLocked(f, now.UnixMilli()), l.longWindowLocked(f, now.UnixMilli())
		cur, earlier := l.weekLocked(f, now.UnixMilli())
		if w == nil && long == nil && cur == nil && earlier == nil {
			continue
		}
		fs := FeatureSnapshot{ID: id, Window: w, Long: long}
		if cur != nil || earlier != nil {
			fs.Week = &WeekSnapshot{Current: cur, Earlier: earlier}
		}
		if b, ok := l.baseline(id); ok {
			fs.Baseline = &b
		}
		s.Features = append(s.Features, fs)
	}
	l.mu.Unlock()
	sort.Slice(s.Features, func(i, j int) bool { return s.Features[i].ID < s.Features[j].ID })
	return s
}

// Handler serves Snapshot as JSON, with freshness (seconds by feature id,
// may be nil) added.
func (l *Live) Handler(freshness func() map[string]float64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s := l.Snapshot()
		if freshness != nil {
			s.Freshness = freshness()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	})
}

// Thresholds a version is checked against (config.Monitor, without the
// config import).
type Thresholds struct {
	PSI       float64 `json:"psi"`
	NullRate  float64 `json:"null_rate"`
	Freshness float64 `json:"freshness_seconds"`
}

// Drift is a version's statistics over one window and their drift against
// its baseline: what every report (published values over the window, over
// the long window, served to a consumer) carries. Its fields appear at the
// top level of the reports' JSON.
type Drift struct {
	Summary  Summary  `json:"statistics"`
	Baseline string   `json:"baseline,omitempty"`
	PSI      *float64 `json:"psi,omitempty"`
	KS       *float64 `json:"ks,omitempty"`
	// NullRateChange is the null rate minus the baseline's.
	NullRateChange *float64 `json:"null_rate_change,omitempty"`
	// Histogram is the values between p1 and p99 in HistogramBins bins
	// (Stats.Histogram); absent without non-null values.
	Histogram *Histogram `json:"histogram,omitempty"`
}

// FeatureReport is one version's statistics, drift and verdict.
type FeatureReport struct {
	ID string `json:"feature"`
	Drift
	Freshness  *float64   `json:"freshness_seconds,omitempty"`
	Thresholds Thresholds `json:"thresholds"`
	// Crossed lists the thresholds crossed: psi, null_rate, freshness.
	Crossed []string `json:"crossed,omitempty"`
	// LongWindow is the published values over the workers' long window
	// (LiveOptions.LongWindow), when they keep one.
	LongWindow *WindowReport `json:"long_window,omitempty"`
	// Served are the statistics of the values served to each consumer
	// (from the lookup log; see Served), when asked for.
	Served []ServedReport `json:"served,omitempty"`
	// Week is the last 24 hours against the same hours a week earlier,
	// when the workers keep them (worker --baseline week).
	Week *WeekReport `json:"week,omitempty"`
}

// WeekReport is a version's last 24 hours (Summary) and their drift
// against the same 24 hours a week earlier (Baseline "week").
type WeekReport struct {
	Drift
	// Crossed lists the thresholds crossed: psi, null_rate.
	Crossed []string `json:"crossed,omitempty"`
}

// CheckWeek reports on w's current 24 hours against its earlier ones,
// checked as Check checks published values against a dataset (without
// freshness); nil when w has no current values.
func CheckWeek(id string, w *WeekSnapshot, th Thresholds, minValues int64) *WeekReport {
	if w == nil || w.Current == nil {
		return nil
	}
	var base *Baseline
	if w.Earlier != nil && w.Earlier.Count() > 0 {
		base = &Baseline{Name: WeekBaselineName, Stats: w.Earlier}
		if w.Earlier.count-w.Earlier.nulls < minValues {
			// Too few values a week ago for PSI: compare null rates only.
			r := Check(id, w.Current, base, -1, th, w.Current.count+1)
			return &WeekReport{Drift: r.Drift, Crossed: r.Crossed}
		}
	}
	r := Check(id, w.Current, base, -1, th, minValues)
	return &WeekReport{Drift: r.Drift, Crossed: r.Crossed}
}

// Row renders the report as a table row with FeatureReport.Row's columns:
// "24h vs week earlier" for the feature, no freshness.
func (r WeekReport) Row() []string {
	return FeatureReport{ID: "  24h vs week earlier", Drift: r.Drift, Crossed: r.Crossed}.Row()
}

// ServedReport is the statistics of one version's values served to one
// consumer over one window, and their drift against the version's baseline.
type ServedReport struct {
	Consumer string `json:"consumer"`
	Window   string `json:"window"`
	Drift
	// Crossed lists the thresholds crossed: psi, null_rate.
	Crossed []string `json:"crossed,omitempty"`
}

// ServedValues is what CheckServed reads: the served-value statistics of a
// lookup-log window (Served) or of rolling windows (ServedLive).
type ServedValues interface {
	Consumers(id string) []string
	Windows() []time.Duration
	Stats(id, consumer string, window time.Duration) *Stats
}

// CheckServed reports on the values of version id served to each consumer
// in s, per window (consumers sorted, windows in s's order; windows a
// consumer was served nothing in are left out), checked as Check checks
// published values (without freshness).
func CheckServed(id string, s ServedValues, baseline *Baseline, th Thresholds, minValues int64) []ServedReport {
	var out []ServedReport
	for _, c := range s.Consumers(id) {
		for _, w := range s.Windows() {
			st := s.Stats(id, c, w)
			if st == nil {
				continue
			}
			r := Check(id, st, baseline, -1, th, minValues)
			out = append(out, ServedReport{Consumer: c, Window: w.String(), Drift: r.Drift, Crossed: r.Crossed})
		}
	}
	return out
}

// Row renders the report as a table row with FeatureReport.Row's columns:
// "served to CONSUMER (WINDOW)" for the feature, no freshness.
func (r ServedReport) Row() []string {
	fr := FeatureReport{ID: fmt.Sprintf("  served to %s (%s)", r.Consumer, shortDuration(r.Window)), Drift: r.Drift, Crossed: r.Crossed}
	return fr.Row()
}

// shortDuration writes a time.Duration's String without zero minutes and
// seconds ("1h0m0s" as "1h").
func shortDuration(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = strings.TrimSuffix(out, "0s")
	}
	if strings.HasSuffix(out, "h0m") {
		out = strings.TrimSuffix(out, "0m")
	}
	return out
}

// Merge merges several workers' snapshots: per version, the sum of their
// window statistics, the first baseline met, the smallest freshness (the
// freshest worker). Each worker reports the partitions it owns.
func Merge(snaps []Snapshot) (map[string]*Stats, map[string]*Baseline, map[string]float64, error) {
	stats, bases, fresh := map[string]*Stats{}, map[string]*Baseline{}, map[string]float64{}
	for _, s := range snaps {
		for _, f := range s.Features {
			if f.Baseline != nil && bases[f.ID] == nil {
				bases[f.ID] = f.Baseline
			}
			if f.Window == nil {
				continue
			}
			if stats[f.ID] == nil {
				stats[f.ID] = NewStats()
			}
			if err := stats[f.ID].Merge(f.Window); err != nil {
				return nil, nil, nil, fmt.Errorf("%s: %w", f.ID, err)
			}
		}
		for id, v := range s.Freshness {
			if cur, ok := fresh[id]; !ok || v < cur {
				fresh[id] = v
			}
		}
	}
	return stats, bases, fresh, nil
}

// MergeLong merges several workers' long-window statistics, per version
// (as Merge merges the window's). window is the snapshots' LongWindow
// ("" when no worker keeps one).
func MergeLong(snaps []Snapshot) (stats map[string]*Stats, window string, err error) {
	stats = map[string]*Stats{}
	for _, s := range snaps {
		if window == "" {
			window = s.LongWindow
		}
		for _, f := range s.Features {
			if f.Long == nil {
				continue
			}
			if stats[f.ID] == nil {
				stats[f.ID] = NewStats()
			}
			if err := stats[f.ID].Merge(f.Long); err != nil {
				return nil, "", fmt.Errorf("%s: %w", f.ID, err)
			}
		}
	}
	return stats, window, nil
}

// WindowReport is a version's published values over another window than
// the report's (the long window): statistics and drift, no verdict.
type WindowReport struct {
	Window string `json:"window"`
	Drift
}

// CheckWindow is Check's statistics and drift of stats over window,
// without thresholds: the long window informs, the window decides.
func CheckWindow(id, window string, stats *Stats, baseline *Baseline, minValues int64) *WindowReport {
	r := Check(id, stats, baseline, -1, Thresholds{}, minValues)
	return &WindowReport{Window: window, Drift: r.Drift}
}

// Row renders the report as a table row with FeatureReport.Row's columns:
// "over WINDOW" for the feature, no freshness or verdict.
func (r WindowReport) Row() []string {
	row := FeatureReport{ID: "  over " + shortDuration(r.Window), Drift: r.Drift}.Row()
	row[len(row)-1] = ""
	return row
}

// Check reports on one version: its statistics, its drift against baseline
// (when given, with at least minValues non-null values on the live side)
// and which thresholds it crosses. freshness < 0: unknown.
func Check(id string, live *Stats, baseline *Baseline, freshness float64, th Thresholds, minValues int64) FeatureReport {
	r := FeatureReport{ID: id, Thresholds: th}
	if live == nil {
		live = NewStats()
	}
	r.Summary = live.Summary()
	if h, ok := live.Histogram(HistogramBins); ok {
		r.Histogram = &h
	}
	if freshness >= 0 {
		r.Freshness = &freshness
		if freshness > th.Freshness {
			r.Crossed = append(r.Crossed, "freshness")
		}
	}
	nullRate := r.Summary.NullRate
	if baseline != nil && baseline.Stats != nil {
		r.Baseline = baseline.Name
		change := nullRate - baseline.Stats.NullRate()
		r.NullRateChange = &change
		nullRate = change
		if live.count-live.nulls >= minValues {
			if psi, ok := PSI(baseline.Stats, live); ok {
				r.PSI = &psi
				if psi > th.PSI {
					r.Crossed = append(r.Crossed, "psi")
				}
			}
			if ks, ok := KS(baseline.Stats, live); ok {
				r.KS = &ks
			}
		}
	}
	if r.Summary.Count > 0 && nullRate > th.NullRate {
		r.Crossed = append(r.Crossed, "null_rate")
	}
	sort.Strings(r.Crossed)
	return r
}

// MinValues is the default LiveOptions.MinValues, exported for Check's
// callers.
const MinValues = 100

func fmtOpt(v *float64, prec int) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', prec, 64)
}

// TopShownInText is how many top values TopLine shows.
const TopShownInText = 5

// TopLine describes a list's lengths and the most frequent list elements
// or strings in one line, "lists of 1-3 (mean 2.9); top: 42 ×399, 7 ×12
// (counts within 3)"; "" for numbers. Values longer than 24 characters
// are cut.
func (d Drift) TopLine() string {
	var parts []string
	if l := d.Summary.Length; l != nil && l.Min != nil {
		parts = append(parts, fmt.Sprintf("lists of %g-%g (mean %.3g)", *l.Min, *l.Max, *l.Mean))
	}
	if len(d.Summary.Top) > 0 {
		var vs []string
		for _, tv := range d.Summary.Top[:min(TopShownInText, len(d.Summary.Top))] {
			v := tv.Value
			if r := []rune(v); len(r) > 24 {
				v = string(r[:23]) + "…"
			}
			vs = append(vs, fmt.Sprintf("%s ×%d", strconv.Quote(v), tv.Count))
		}
		top := "top: " + strings.Join(vs, ", ")
		if d.Summary.TopError > 0 {
			top += fmt.Sprintf(" (counts within %d)", d.Summary.TopError)
		}
		parts = append(parts, top)
	}
	return strings.Join(parts, "; ")
}

// SparklineCell renders h as "P1 |sparkline| P99" (h may be nil: "-").
func SparklineCell(h *Histogram) string {
	if h == nil {
		return "-"
	}
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }
	return g(h.Lo) + " |" + h.Sparkline() + "| " + g(h.Hi)
}

// Row renders the report as a table row: feature, values, null rate,
// mean, p50, p99, baseline, PSI, KS, freshness, verdict.
func (r FeatureReport) Row() []string {
	q := func(name string) string {
		if v, ok := r.Summary.Quantiles[name]; ok {
			return strconv.FormatFloat(v, 'g', 5, 64)
		}
		return "-"
	}
	mean := "-"
	if r.Summary.Mean != nil {
		mean = strconv.FormatFloat(*r.Summary.Mean, 'g', 5, 64)
	}
	fresh := "-"
	if r.Freshness != nil {
		fresh = (time.Duration(*r.Freshness * float64(time.Second))).Round(time.Second).String()
	}
	verdict := "ok"
	if len(r.Crossed) > 0 {
		verdict = "CROSSED " + fmt.Sprint(r.Crossed)
	}
	base := r.Baseline
	if base == "" {
		base = "-"
	}
	return []string{r.ID, strconv.FormatInt(r.Summary.Count, 10), strconv.FormatFloat(r.Summary.NullRate*100, 'f', 1, 64) + "%",
		mean, q("p50"), q("p99"), base, fmtOpt(r.PSI, 3), fmtOpt(r.KS, 3), fresh, verdict}
}
