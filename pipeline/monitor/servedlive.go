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
var servedLiveWindows = []struct {
	window time.Duration
	spec   ringSpec
}{
	{time.Hour, ringSpec{bucket: (10 * time.Minute).Milliseconds(), buckets: 6}},
	{24 * time.Hour, ringSpec{bucket: time.Hour.Milliseconds(), buckets: 24}},
}

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
// feature served, two O(1) Stats.Add under one lock. Safe for concurrent
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

// Add observes one lookup-log entry: its numbers, lists and strings, in the
// sub-window of its request time in each window.
func (s *ServedLive) Add(e *lookuplog.Entry) {
	now := s.o.Now().UnixMilli()
	at := min(e.At, now)
	if at < now-servedLiveWindows[len(servedLiveWindows)-1].window.Milliseconds() {
		return // older than every window
	}
	consumer := e.Consumer
	if consumer == "" {
		consumer = AnonymousConsumer
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, v := range e.Features {
		s.each(id, consumer, at, func(st *Stats) { st.Add(v) })
	}
	for id, l := range e.Lists {
		s.each(id, consumer, at, func(st *Stats) { st.AddList(l, l != nil) })
	}
	for id, v := range e.Strings {
		s.each(id, consumer, at, func(st *Stats) { addString(st, v) })
	}
	for id, l := range e.StringLists {
		s.each(id, consumer, at, func(st *Stats) { st.AddStringList(l, l != nil) })
	}
}

// each calls add with the sub-window of time at of every window of (id,
// consumer), skipping a sub-window whose slot already holds a later period
// (at is then outside that window). mu held.
func (s *ServedLive) each(id, consumer string, at int64, add func(*Stats)) {
	byConsumer := s.feats[id]
	if byConsumer == nil {
		byConsumer = map[string][]ring{}
		s.feats[id] = byConsumer
	}
	c := consumer
	if byConsumer[c] == nil && len(byConsumer) >= s.o.MaxConsumers && c != OtherConsumers {
		c = OtherConsumers
	}
	rings := byConsumer[c]
	if rings == nil {
		for _, w := range servedLiveWindows {
			rings = append(rings, newRing(w.spec.buckets))
		}
		byConsumer[c] = rings
	}
	for i, w := range servedLiveWindows {
		r := &rings[i]
		start := at / w.spec.bucket * w.spec.bucket
		slot := int(start / w.spec.bucket % int64(w.spec.buckets))
		switch {
		case r.starts[slot] > start:
			continue
		case r.starts[slot] != start || r.slots[slot] == nil:
			r.slots[slot], r.starts[slot] = NewStats(), start
		}
		add(r.slots[slot])
	}
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
