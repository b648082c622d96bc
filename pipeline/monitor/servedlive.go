package monitor

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// ServedLiveOptions configure ServedLive.
type ServedLiveOptions struct {
	// MaxConsumers bounds the consumers with statistics of their own per
	// feature version; later ones count under OtherConsumers. Default 20.
	MaxConsumers int
	// Now defaults to time.Now.
	Now func() time.Time
}

// servedLiveWindows are ServedLive's rolling windows: 1h in six 10-minute
// sub-windows, 24h in 24 hourly ones (DefaultServedWindows, rolling).
var servedLiveWindows = [...]struct {
	window time.Duration
	spec   ringSpec
}{
	{time.Hour, ringSpec{bucket: (10 * time.Minute).Milliseconds(), buckets: 6}},
	{24 * time.Hour, ringSpec{bucket: time.Hour.Milliseconds(), buckets: 24}},
}

// ServedThinAfter is how many number values each of ServedLive's
// sub-windows adds one by one per (feature version, consumer) before it
// samples them (newThinnedStats): past it, a value is added with
// probability 1/w and weight w, w the smallest power of two above
// values/ServedThinAfter, and otherwise only counted. The sample's
// effective size stays above 1.3 × 8,192 ≈ 10,900 values per sub-window,
// so past it a quantile's rank is off by at most about ±1% (two standard
// errors of a proportion, 2·sqrt(0.25/10,900)) on top of the sketch's 1%
// relative accuracy, and the mean by about ±2% of the values' standard
// deviation (the standard deviation itself by more for heavy tails: ±10%
// for a lognormal); counts and null rates stay exact. Below it (about 14 values a
// second over a 10-minute sub-window, 2.3 a second over an hourly one)
// the statistics are exact.
const ServedThinAfter = 8192

// ServedLive is Served kept current: the statistics of the values served
// per (feature version, consumer) over rolling windows ending now (1h,
// covering the last 50 to 60 minutes, and 24h, the last 23 to 24 hours) by
// request time, fed entry by entry as the lookup log is followed (usage.Follow),
// for a long-running process such as the web catalog. Entries older than a
// window (a replay from further back) count in none of it; entries from
// the future (clock skew) count as now.
//
// Memory: per version at most MaxConsumers+1 consumers, each 30 Stats (six
// and 24 sub-windows; each at most 32 KiB, typically a few KiB as values
// rarely span more than a few orders of magnitude). Cost per entry: per
// feature served, two O(1) Stats.Add under one lock; past ServedThinAfter
// number values in a sub-window, most of them only count (a random draw),
// with the statistical error ServedThinAfter states. Safe for concurrent
// use.
type ServedLive struct {
	o     ServedLiveOptions
	mu    sync.Mutex
	feats map[string]map[string][]ring // feature id -> consumer -> ring per window
}

// NewServedLive returns empty statistics.
func NewServedLive(o ServedLiveOptions) *ServedLive {
	if o.MaxConsumers <= 0 {
		o.MaxConsumers = 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &ServedLive{o: o, feats: map[string]map[string][]ring{}}
}

// Add observes one lookup-log entry: its numbers, lists and strings, and
// its bucketed and top_k values as lists (as Served.Add does), in the
// sub-window of its request time in each window. It is AddRecord of the
// entry.
func (s *ServedLive) Add(e *lookuplog.Entry) {
	var r lookuplog.Record
	r.SetEntry(e)
	s.AddRecord(&r)
}

// AddRecord is Add for a record decoded by a lookuplog.Decoder (the
// follower's path); it keeps nothing of r. Cost: per feature served, two
// map lookups and two Stats adds (one per window) under one lock.
func (s *ServedLive) AddRecord(e *lookuplog.Record) {
	now := s.o.Now().UnixMilli()
	at := min(e.At, now)
	if at < now-servedLiveWindows[len(servedLiveWindows)-1].window.Milliseconds() {
		return // older than every window
	}
	consumer := e.Consumer
	if consumer == "" {
		consumer = AnonymousConsumer
	}
	var pos [len(servedLiveWindows)]slotPos // the same for every feature of e
	for i, w := range servedLiveWindows {
		pos[i].start = at / w.spec.bucket * w.spec.bucket
		pos[i].slot = int(pos[i].start / w.spec.bucket % int64(w.spec.buckets))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range e.Features {
		f := &e.Features[i]
		for _, st := range s.slots(f.ID, consumer, &pos) {
			switch {
			case st == nil:
			case f.OK:
				st.AddValue(f.Value)
			default:
				st.AddNull()
			}
		}
	}
	for i := range e.Lists {
		l := &e.Lists[i]
		for _, st := range s.slots(l.ID, consumer, &pos) {
			if st != nil {
				st.AddList(l.Values, l.OK)
			}
		}
	}
	for i := range e.Strings {
		v := &e.Strings[i]
		for _, st := range s.slots(v.ID, consumer, &pos) {
			if st != nil {
				st.AddString(v.Value, v.OK)
			}
		}
	}
	for i := range e.StringLists {
		l := &e.StringLists[i]
		for _, st := range s.slots(l.ID, consumer, &pos) {
			if st != nil {
				st.AddStringList(l.Values, l.OK)
			}
		}
	}
	if e.Entry != nil { // sections only encoding/json reads: buckets, bucket strings, tops
		eachServedList(e.Entry, func(id string, l []float64, ok bool) {
			for _, st := range s.slots(id, consumer, &pos) {
				if st != nil {
					st.AddList(l, ok)
				}
			}
		}, func(id string, l []string, ok bool) {
			for _, st := range s.slots(id, consumer, &pos) {
				if st != nil {
					st.AddStringList(l, ok)
				}
			}
		})
	}
}

// slotPos is the sub-window of a time in one window: its start (ms) and
// its slot in the window's ring.
type slotPos struct {
	start int64
	slot  int
}

// slots returns the sub-window at pos of every window of (id, consumer),
// nil for a window whose slot already holds a later period (the time is
// then outside that window). mu held.
func (s *ServedLive) slots(id, consumer string, pos *[len(servedLiveWindows)]slotPos) (out [len(servedLiveWindows)]*Stats) {
	byConsumer := s.feats[id]
	if byConsumer == nil {
		byConsumer = map[string][]ring{}
		s.feats[id] = byConsumer
	}
	c := consumer
	rings := byConsumer[c]
	if rings == nil && len(byConsumer) >= s.o.MaxConsumers && c != OtherConsumers {
		c = OtherConsumers
		rings = byConsumer[c]
	}
	if rings == nil {
		for _, w := range servedLiveWindows {
			rings = append(rings, newRing(w.spec.buckets))
		}
		byConsumer[c] = rings
	}
	for i := range servedLiveWindows {
		r := &rings[i]
		start, slot := pos[i].start, pos[i].slot
		switch {
		case r.starts[slot] > start:
			continue
		case r.starts[slot] != start || r.slots[slot] == nil:
			r.slots[slot], r.starts[slot] = newThinnedStats(ServedThinAfter), start
		}
		out[i] = r.slots[slot]
	}
	return out
}

// Windows are the windows kept (1h, 24h).
func (s *ServedLive) Windows() []time.Duration {
	out := make([]time.Duration, len(servedLiveWindows))
	for i, w := range servedLiveWindows {
		out[i] = w.window
	}
	return out
}

// Consumers returns the consumers served feature version id in any window
// now, sorted.
func (s *ServedLive) Consumers(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.Now().UnixMilli()
	var out []string
	for c, rings := range s.feats[id] {
		for i, w := range servedLiveWindows {
			if rings[i].window(w.spec, now) != nil {
				out = append(out, c)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// Stats returns the statistics of the values of feature version id served
// to consumer over window (one of Windows) ending now; nil when none was.
// The Stats are a merged copy.
func (s *ServedLive) Stats(id, consumer string, window time.Duration) *Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	rings := s.feats[id][consumer]
	for i, w := range servedLiveWindows {
		if w.window == window && rings != nil {
			st := rings[i].window(w.spec, s.o.Now().UnixMilli())
			if st == nil || st.Count() == 0 {
				return nil
			}
			return st
		}
	}
	return nil
}

// Check reports on the values of version id served to each consumer, per
// window, as CheckServed does for Served.
func (s *ServedLive) Check(id string, baseline *Baseline, th Thresholds, minValues int64) []ServedReport {
	return CheckServed(id, s, baseline, th, minValues)
}

// Label is the report's short name: "served to CONSUMER (WINDOW)".
func (r ServedReport) Label() string {
	return fmt.Sprintf("served to %s (%s)", r.Consumer, shortDuration(r.Window))
}
