package monitor

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Baseline is the statistics a feature version's live values are compared
// with: by default a training dataset's (its backfill manifest).
type Baseline struct {
	// Name labels the drift gauges (baseline="..."), e.g. the dataset's
	// name@version or its manifest's file name.
	Name  string
	Stats *Stats
}

// LiveOptions configure Live.
type LiveOptions struct {
	// Window is the rolling window the statistics cover. Default 1h. It is
	// kept as Buckets sub-windows; the oldest is dropped whole, so the
	// statistics cover between Window - Window/Buckets and Window.
	Window time.Duration
	// Buckets is the number of sub-windows. Default 12 (5 minutes of 1h).
	Buckets int
	// LongWindow is a second rolling window the statistics are also kept
	// over (Snapshot, `featurepipe monitor`), kept as LongBuckets
	// sub-windows like Window. The gauges and drift verdicts use Window
	// only. Default 24h; negative: none. Cost: each Commit merges the batch
	// into one more sub-window, and a Snapshot merges LongBuckets more
	// sub-windows per version; memory: up to LongBuckets more Stats per
	// version (each at most 32 KiB, typically a few KiB).
	LongWindow time.Duration
	// LongBuckets is the number of sub-windows of LongWindow. Default 24
	// (an hour of 24h).
	LongBuckets int
	// Sample is the fraction of the entities with published changes whose
	// feature values are observed, in (0, 1]. Default 1: every one. Cost:
	// per sampled entity and feature, one read and fold of its tiles (the
	// value as of now) and a sketch insert, in the worker's publication.
	Sample float64
	// Baselines by feature id (name@version). Versions without one (and
	// without one from Resolve) get statistics but no drift gauges.
	Baselines map[string]Baseline
	// Resolve, when set, finds the baseline of a version that Baselines
	// has none for, e.g. the newest dataset in the catalog that includes
	// it (ok false: none). It is called at every scrape and Snapshot for
	// each version with values in the window, under Live's lock, so it
	// must be cheap, must not call back into Live, and must be safe for
	// concurrent use. The Stats it returns are only read.
	Resolve func(id string) (Baseline, bool)
	// MinValues is how many non-null values the window needs before PSI
	// and KS are exported: a handful of values is noise, not drift.
	// Default 100.
	MinValues int64
	// Week adds the week-earlier baseline: per version, the last 24 hours
	// (whole hours: the current one and the 23 before) compared with the
	// same hours seven days earlier, exported with baseline="week"
	// (WeekBaselineName) next to the dataset baseline's gauges, once both
	// sides hold MinValues non-null values. Cost: WeekHours hourly Stats
	// per version (each at most 32 KiB, typically a few KiB: a few MiB per
	// version at most), one more sub-window merge per Commit, and 48 more
	// merges per version at each scrape and Snapshot.
	Week bool
	// Hours keeps the hourly statistics of Week durably, so that a
	// restarted worker compares with last week at once: NewLive restores
	// them, Commit saves the changed hours at most every FlushEvery, and
	// Flush saves the rest (call it at shutdown). Default: none (the week
	// restarts empty with the process). Ignored without Week.
	Hours HourStore
	// FlushEvery is how often Commit saves changed hours to Hours (a crash
	// loses at most that much). Default DefaultFlushEvery (1 minute).
	FlushEvery time.Duration
	// OnError receives the errors of saving hours from Commit (which does
	// not fail for them: statistics never stop publication). May be nil.
	OnError func(error)
	// Now defaults to time.Now.
	Now func() time.Time
}

// Live keeps rolling-window statistics per feature version of the values
// the worker publishes, and exports them at scrape time:
// featurepipe_feature_null_rate{feature,version},
// featurepipe_feature_values{feature,version} (values in the window) and,
// for versions with a baseline, featurepipe_feature_drift_psi,
// featurepipe_feature_drift_ks and
// featurepipe_feature_null_rate_change{feature,version,baseline}. Observations are
// accumulated per publication (Batch, no lock) and merged once
// (Commit); a scrape merges each version's sub-windows and compares them
// with the baseline. Safe for concurrent use.
type Live struct {
	o     LiveOptions
	rings []ringSpec // [0]: Window; [1]: LongWindow, when kept; [weekRing]: hours, with Week
	// weekRing is the index of the hourly ring in rings (with Week).
	weekRing int

	mu       sync.Mutex
	features map[string]*liveFeature
	// dirty are the hours changed since the last save to Options.Hours.
	dirty     map[hourRef]bool
	lastFlush int64 // ms

	psi, ks, nullRate, nullChange, values *prometheus.Desc
}

// ringSpec is the shape of one rolling window: buckets sub-windows of
// bucket ms.
type ringSpec struct {
	bucket  int64
	buckets int
}

type liveFeature struct {
	name    string
	version string
	rings   []ring // one per Live.rings
}

// ring is one rolling window's sub-windows.
type ring struct {
	slots  []*Stats
	starts []int64 // sub-window start (ms) of each slot; -1 unused
}

func newRing(n int) ring {
	r := ring{slots: make([]*Stats, n), starts: make([]int64, n)}
	for i := range r.starts {
		r.starts[i] = -1
	}
	return r
}

// add merges s into the sub-window of time now (ms).
func (r *ring) add(spec ringSpec, now int64, s *Stats) error {
	start := now / spec.bucket * spec.bucket
	slot := int(start / spec.bucket % int64(spec.buckets))
	if r.starts[slot] != start || r.slots[slot] == nil {
		r.slots[slot], r.starts[slot] = NewStats(), start
	}
	return r.slots[slot].Merge(s)
}

// window merges the sub-windows of the window ending at now (ms); nil
// when none has values.
func (r *ring) window(spec ringSpec, now int64) *Stats {
	from := now/spec.bucket*spec.bucket - spec.bucket*int64(spec.buckets-1)
	var out *Stats
	for i, s := range r.slots {
		if s == nil || r.starts[i] < from {
			continue
		}
		if out == nil {
			out = NewStats()
		}
		_ = out.Merge(s) // same accuracy everywhere: cannot fail
	}
	return out
}

// NewLive validates o and returns a Live registered on r.
func NewLive(r prometheus.Registerer, o LiveOptions) (*Live, error) {
	if o.Window <= 0 {
		o.Window = time.Hour
	}
	if o.Buckets <= 0 {
		o.Buckets = 12
	}
	if o.Sample == 0 {
		o.Sample = 1
	}
	if o.Sample < 0 || o.Sample > 1 {
		return nil, fmt.Errorf("statistics sample %v: want a fraction in (0, 1]", o.Sample)
	}
	if o.Window/time.Duration(o.Buckets) < time.Millisecond {
		return nil, fmt.Errorf("statistics window %s too short for %d sub-windows", o.Window, o.Buckets)
	}
	if o.LongWindow == 0 {
		o.LongWindow = 24 * time.Hour
	}
	if o.LongBuckets <= 0 {
		o.LongBuckets = 24
	}
	if o.LongWindow > 0 && o.LongWindow/time.Duration(o.LongBuckets) < time.Millisecond {
		return nil, fmt.Errorf("statistics long window %s too short for %d sub-windows", o.LongWindow, o.LongBuckets)
	}
	if o.LongWindow < 0 {
		o.LongWindow = 0
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MinValues <= 0 {
		o.MinValues = MinValues
	}
	rings := []ringSpec{{(o.Window / time.Duration(o.Buckets)).Milliseconds(), o.Buckets}}
	if o.LongWindow > 0 {
		rings = append(rings, ringSpec{(o.LongWindow / time.Duration(o.LongBuckets)).Milliseconds(), o.LongBuckets})
	}
	weekRing := len(rings)
	if o.Week {
		rings = append(rings, weekSpec)
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = DefaultFlushEvery
	}
	l := &Live{o: o, rings: rings, weekRing: weekRing, features: map[string]*liveFeature{}, dirty: map[hourRef]bool{},
		psi: prometheus.NewDesc("featurepipe_feature_drift_psi",
			"Population stability index of the feature version's published values over the statistics window against its baseline "+
				"(10 baseline decile bins, smoothed): < 0.1 stable, > 0.25 major shift.", []string{"feature", "version", "baseline"}, nil),
		ks: prometheus.NewDesc("featurepipe_feature_drift_ks",
			"Kolmogorov-Smirnov statistic of the feature version's published values over the statistics window against its baseline.",
			[]string{"feature", "version", "baseline"}, nil),
		nullRate: prometheus.NewDesc("featurepipe_feature_null_rate",
			"Fraction of the feature version's published values over the statistics window that are null.", []string{"feature", "version"}, nil),
		nullChange: prometheus.NewDesc("featurepipe_feature_null_rate_change",
			"The feature version's null rate over the statistics window minus its baseline's.", []string{"feature", "version", "baseline"}, nil),
		values: prometheus.NewDesc("featurepipe_feature_values",
			"Published values of the feature version observed over the statistics window (after sampling).", []string{"feature", "version"}, nil),
	}
	l.lastFlush = o.Now().UnixMilli()
	if o.Week && o.Hours != nil {
		if err := l.loadHours(); err != nil {
			return nil, err
		}
	}
	if r != nil {
		if err := r.Register(l); err != nil {
			return nil, fmt.Errorf("register feature statistics: %w", err)
		}
	}
	return l, nil
}

// Sampled reports whether to observe the next entity's values
// (Options.Sample).
func (l *Live) Sampled() bool { return l.o.Sample >= 1 || rand.Float64() < l.o.Sample }

// Batch accumulates one publication's observations, by feature id, without
// a lock; Commit merges it. Not safe for concurrent use.
type Batch struct {
	stats map[string]*Stats
	names map[string][2]string
}

// NewBatch returns an empty batch.
func (l *Live) NewBatch() *Batch {
	return &Batch{stats: map[string]*Stats{}, names: map[string][2]string{}}
}

// Stats returns the batch's statistics of feature version id (name,
// version), to Add values to.
func (b *Batch) Stats(id, name string, version int) *Stats {
	s := b.stats[id]
	if s == nil {
		s = NewStats()
		b.stats[id] = s
		b.names[id] = [2]string{name, strconv.Itoa(version)}
	}
	return s
}

// Add observes value v (nil: null) of feature version id (name, version).
func (b *Batch) Add(id, name string, version int, v *float64) {
	b.Stats(id, name, version).Add(v)
}

// Commit merges the batch into the current sub-window of each version, in
// every window kept.
func (l *Live) Commit(b *Batch) error {
	if len(b.stats) == 0 {
		return nil
	}
	now := l.o.Now().UnixMilli()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, s := range b.stats {
		f := l.features[id]
		if f == nil {
			n := b.names[id]
			f = l.featureLocked(id)
			f.name, f.version = n[0], n[1]
		}
		for i, spec := range l.rings {
			if err := f.rings[i].add(spec, now, s); err != nil {
				return err
			}
		}
		if l.o.Week {
			l.dirty[hourRef{id, now / hourMS * hourMS}] = true
		}
	}
	if l.o.Week && l.o.Hours != nil && now-l.lastFlush >= l.o.FlushEvery.Milliseconds() {
		if err := l.flushLocked(now); err != nil && l.o.OnError != nil {
			l.o.OnError(err)
		}
	}
	return nil
}

// Window returns the statistics of feature version id over the window (nil
// when none was observed in it).
func (l *Live) Window(id string) *Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.features[id]
	if f == nil {
		return nil
	}
	return l.windowLocked(f, l.o.Now().UnixMilli())
}

// LongWindow returns the statistics of feature version id over
// LiveOptions.LongWindow (nil when none was observed in it, or no long
// window is kept).
func (l *Live) LongWindow(id string) *Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.features[id]
	if f == nil {
		return nil
	}
	return l.longWindowLocked(f, l.o.Now().UnixMilli())
}

func (l *Live) windowLocked(f *liveFeature, now int64) *Stats {
	return f.rings[0].window(l.rings[0], now)
}

func (l *Live) longWindowLocked(f *liveFeature, now int64) *Stats {
	if len(l.rings) < 2 {
		return nil
	}
	return f.rings[1].window(l.rings[1], now)
}

// Describe implements prometheus.Collector.
func (l *Live) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.psi
	ch <- l.ks
	ch <- l.nullRate
	ch <- l.nullChange
	ch <- l.values
}

// Collect implements prometheus.Collector: per version, the window's null
// rate and count, and PSI and KS against its baseline when both sides have
// non-null values. Cost: a merge of each version's sub-windows and a pass
// over the sketches' bins.
func (l *Live) Collect(ch chan<- prometheus.Metric) {
	now := l.o.Now().UnixMilli()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, f := range l.features {
		l.collectWeekLocked(ch, f, now)
		w := l.windowLocked(f, now)
		if w == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(l.values, prometheus.GaugeValue, float64(w.Count()), f.name, f.version)
		ch <- prometheus.MustNewConstMetric(l.nullRate, prometheus.GaugeValue, w.NullRate(), f.name, f.version)
		b, ok := l.baseline(id)
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(l.nullChange, prometheus.GaugeValue, w.NullRate()-b.Stats.NullRate(), f.name, f.version, b.Name)
		if w.count-w.nulls < l.o.MinValues {
			continue
		}
		if psi, ok := PSI(b.Stats, w); ok {
			ch <- prometheus.MustNewConstMetric(l.psi, prometheus.GaugeValue, psi, f.name, f.version, b.Name)
		}
		if ks, ok := KS(b.Stats, w); ok {
			ch <- prometheus.MustNewConstMetric(l.ks, prometheus.GaugeValue, ks, f.name, f.version, b.Name)
		}
	}
}

// collectWeekLocked exports version f's drift against the same 24 hours a
// week earlier (Options.Week): the null-rate change once both sides have
// values, PSI and KS once both have MinValues non-null values. mu held.
func (l *Live) collectWeekLocked(ch chan<- prometheus.Metric, f *liveFeature, now int64) {
	cur, earlier := l.weekLocked(f, now)
	if cur == nil || earlier == nil || cur.Count() == 0 || earlier.Count() == 0 {
		return
	}
	ch <- prometheus.MustNewConstMetric(l.nullChange, prometheus.GaugeValue, cur.NullRate()-earlier.NullRate(), f.name, f.version, WeekBaselineName)
	if cur.count-cur.nulls < l.o.MinValues || earlier.count-earlier.nulls < l.o.MinValues {
		return
	}
	if psi, ok := PSI(earlier, cur); ok {
		ch <- prometheus.MustNewConstMetric(l.psi, prometheus.GaugeValue, psi, f.name, f.version, WeekBaselineName)
	}
	if ks, ok := KS(earlier, cur); ok {
		ch <- prometheus.MustNewConstMetric(l.ks, prometheus.GaugeValue, ks, f.name, f.version, WeekBaselineName)
	}
}

// baseline returns the baseline of feature version id: Options.Baselines',
// else Options.Resolve's. ok is false when neither has one with statistics.
func (l *Live) baseline(id string) (Baseline, bool) {
	b, ok := l.o.Baselines[id]
	if !ok && l.o.Resolve != nil {
		b, ok = l.o.Resolve(id)
	}
	return b, ok && b.Stats != nil
}
