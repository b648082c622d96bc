package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// Served values: the statistics of what the lookup service answered, per
// consumer, read from the lookup log (package lookuplog: one entry per
// served key, with the consumer and every value served). They are the same
// Stats as the workers' published values, so the same PSI and KS compare a
// consumer's served values with the training baseline: a model sees drift
// in what it is served even when the published values look fine (e.g. it
// asks for a different population of keys than it was trained on).

// AnonymousConsumer is the consumer of lookup-log entries without one
// (older replicas), as the lookup service names callers without a name.
const AnonymousConsumer = "anonymous"

// OtherConsumers collects, per feature version, the consumers beyond
// ServedOptions.MaxConsumers.
const OtherConsumers = "other"

// Default windows of served statistics: the same as the workers'.
var DefaultServedWindows = []time.Duration{time.Hour, 24 * time.Hour}

// ServedOptions configure Served.
type ServedOptions struct {
	// Now is the end of every window. Default time.Now() at NewServed.
	Now time.Time
	// Windows are the windows statistics are kept over, each ending at Now:
	// an entry counts in a window when Now - window <= its time (the request
	// time, lookuplog.Entry.At) <= Now; later times (clock skew) count as
	// Now. Default DefaultServedWindows (1h, 24h).
	Windows []time.Duration
	// Sample is the fraction of lookup-log entries observed, in (0, 1].
	// Default 1: every one. The lookup log itself may already be a sample
	// (serve --lookup-log-sample).
	Sample float64
	// MaxConsumers bounds the consumers with statistics of their own per
	// feature version; later ones count under OtherConsumers. Default 20.
	MaxConsumers int
}

// Served keeps the statistics of served values per (feature version,
// consumer) over fixed windows ending at ServedOptions.Now, from lookup-log
// entries (Add, or ReadServed).
//
// Memory is bounded: per feature version at most MaxConsumers+1 consumers,
// each one Stats per window (a DDSketch of at most 2 x 2048 bins, 32 KiB;
// typically a few hundred bins, a few KiB, as values rarely span more than
// a few orders of magnitude). With 50 versions, 20 consumers and 2 windows
// that is at most 67 MiB, typically a few MiB; nothing grows with the
// number of entries. Cost: per observed entry, a JSON decode (ReadServed)
// and per feature and window an O(1) Stats.Add. Not safe for concurrent use.
type Served struct {
	o     ServedOptions
	now   int64                          // ms
	feats map[string]map[string][]*Stats // feature id -> consumer -> stats per window
}

// NewServed validates o and returns empty statistics.
func NewServed(o ServedOptions) (*Served, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if len(o.Windows) == 0 {
		o.Windows = DefaultServedWindows
	}
	for _, w := range o.Windows {
		if w <= 0 {
			return nil, fmt.Errorf("served statistics window %s: want a positive duration", w)
		}
	}
	if o.Sample == 0 {
		o.Sample = 1
	}
	if !(o.Sample > 0 && o.Sample <= 1) {
		return nil, fmt.Errorf("served statistics sample %v: want a fraction in (0, 1]", o.Sample)
	}
	if o.MaxConsumers <= 0 {
		o.MaxConsumers = 20
	}
	o.Windows = slices.Clone(o.Windows)
	return &Served{o: o, now: o.Now.UnixMilli(), feats: map[string]map[string][]*Stats{}}, nil
}

// Windows returns the windows kept, as configured.
func (s *Served) Windows() []time.Duration { return s.o.Windows }

// Longest is the longest window: entries older than Now minus it are not
// needed.
func (s *Served) Longest() time.Duration { return slices.Max(s.o.Windows) }

// Add observes the values of one lookup-log entry (with probability
// Options.Sample) in every window its time falls in: its numbers
// (Stats.Add), its lists (Stats.AddList), its strings (Stats.AddString,
// AddStringList), its bucketed and top_k values as lists (eachServedList).
func (s *Served) Add(e *lookuplog.Entry) {
	age := s.now - min(e.At, s.now)
	in := false
	for _, w := range s.o.Windows {
		in = in || age <= w.Milliseconds()
	}
	if !in || s.o.Sample < 1 && rand.Float64() >= s.o.Sample {
		return
	}
	consumer := e.Consumer
	if consumer == "" {
		consumer = AnonymousConsumer
	}
	for id, v := range e.Features {
		for i, st := range s.stats(id, consumer) {
			if age <= s.o.Windows[i].Milliseconds() {
				st.Add(v)
			}
		}
	}
	for id, l := range e.Lists { // list features: a null list is nil
		for i, st := range s.stats(id, consumer) {
			if age <= s.o.Windows[i].Milliseconds() {
				st.AddList(l, l != nil)
			}
		}
	}
	for id, v := range e.Strings { // string features: top values
		for i, st := range s.stats(id, consumer) {
			if age <= s.o.Windows[i].Milliseconds() {
				addString(st, v)
			}
		}
	}
	for id, l := range e.StringLists {
		for i, st := range s.stats(id, consumer) {
			if age <= s.o.Windows[i].Milliseconds() {
				st.AddStringList(l, l != nil)
			}
		}
	}
	eachServedList(e, func(id string, l []float64, ok bool) {
		for i, st := range s.stats(id, consumer) {
			if age <= s.o.Windows[i].Milliseconds() {
				st.AddList(l, ok)
			}
		}
	}, func(id string, l []string, ok bool) {
		for i, st := range s.stats(id, consumer) {
			if age <= s.o.Windows[i].Milliseconds() {
				st.AddStringList(l, ok)
			}
		}
	})
}

// addString adds a served string (nil: null) to st.
func addString(st *Stats, v *string) {
	if v == nil {
		st.AddNull()
		return
	}
	st.AddString(*v, true)
}

// stats returns the statistics per window of feature version id served to
// consumer (OtherConsumers beyond MaxConsumers), created when new.
func (s *Served) stats(id, consumer string) []*Stats {
	byConsumer := s.feats[id]
	if byConsumer == nil {
		byConsumer = map[string][]*Stats{}
		s.feats[id] = byConsumer
	}
	c := consumer
	if byConsumer[c] == nil && len(byConsumer) >= s.o.MaxConsumers && c != OtherConsumers {
		c = OtherConsumers
	}
	st := byConsumer[c]
	if st == nil {
		st = make([]*Stats, len(s.o.Windows))
		for i := range st {
			st[i] = NewStats()
		}
		byConsumer[c] = st
	}
	return st
}

// Consumers returns the consumers served feature version id in any window,
// sorted.
func (s *Served) Consumers(id string) []string {
	var out []string
	for c := range s.feats[id] {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// Stats returns the statistics of the values of feature version id served
// to consumer over window (one of Options.Windows), nil when none was.
// Callers must not modify them.
func (s *Served) Stats(id, consumer string, window time.Duration) *Stats {
	i := slices.Index(s.o.Windows, window)
	st := s.feats[id][consumer]
	if i < 0 || st == nil || st[i].Count() == 0 {
		return nil
	}
	return st[i]
}

// ReadServed reads the lookup-log topic from the first record appended at
// or after o.Now minus the longest window (record timestamps; a later
// entry's own time decides its windows) up to the end offsets seen at the
// start, into new Served statistics. A topic that does not exist yet is no
// statistics, not an error; undecodable records are skipped (the first ten
// logged on log, which may be nil). Cost: one read and JSON decode of every
// lookup-log record of the longest window (at 1,000 keys/s served and 24h,
// 86 million records: minutes), so run it on demand, not per scrape.
func ReadServed(ctx context.Context, conn kafka.Conn, topic string, o ServedOptions, log *zap.Logger) (*Served, error) {
	s, err := NewServed(o)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	cl, err := kafka.NewClient(conn, "featurepipe-monitor-served", log)
	if err != nil {
		return nil, fmt.Errorf("lookup log client: %w", err)
	}
	defer cl.Close()
	rs, err := kafka.ToEnd(ctx, cl, topic)
	if err != nil {
		return nil, fmt.Errorf("read the lookup log %s: %w", topic, err)
	}
	if len(rs) == 0 {
		return s, nil
	}
	if err := kafka.StartAt(ctx, cl, topic, s.now-s.Longest().Milliseconds(), rs); err != nil {
		return nil, fmt.Errorf("lookup log %s: the last %s: %w", topic, s.Longest(), err)
	}
	skipped := 0
	_, err = kafka.ReadRanges(ctx, cl, topic, rs, func(r *kgo.Record) error {
		if n, err := lookuplog.DecodeEach(r.Value, s.Add); n > 0 && skipped < 10 {
			log.Warn("skipping unreadable lookup-log entries", zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset), zap.Int("entries", n), zap.Error(err))
			skipped++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the lookup log %s: %w", topic, err)
	}
	return s, nil
}

// eachServedList passes the bucketed and top_k values of e to num (numbers)
// and str (strings) as lists, the way the baseline's statistics take them
// (the workers' addBucketStats and backfill's): a bucketed feature's map as
// the list of its non-null bucket values in bucket-key order (so the
// lengths are the numbers of buckets and a null map is a null), a top_k
// value as the list of its values, most frequent first, without the counts
// (booleans as 0 and 1), and a bucketed list or top_k feature's map as its
// buckets' lists (or top values) one after the other in bucket-key order.
// Per-bucket statistics are not kept: bucket keys are data, and a Stats
// per key would not be bounded. A top_k text that does not parse (no
// replica writes one) counts as a null.
func eachServedList(e *lookuplog.Entry, num func(id string, l []float64, ok bool), str func(id string, l []string, ok bool)) {
	for _, id := range slices.Sorted(maps.Keys(e.Buckets)) {
		m := e.Buckets[id]
		var l []float64
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if v := m[k]; v != nil {
				l = append(l, *v)
			}
		}
		num(id, l, m != nil)
	}
	for _, id := range slices.Sorted(maps.Keys(e.BucketStrings)) {
		m := e.BucketStrings[id]
		var l []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if v := m[k]; v != nil {
				l = append(l, *v)
			}
		}
		str(id, l, m != nil)
	}
	for _, id := range slices.Sorted(maps.Keys(e.Tops)) {
		var tv topValues
		if tv.add(e.Tops[id]) {
			tv.pass(id, num, str)
		} else {
			num(id, nil, false)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(e.BucketLists)) {
		m := e.BucketLists[id]
		var l []float64
		for _, k := range slices.Sorted(maps.Keys(m)) {
			l = append(l, m[k]...)
		}
		num(id, l, m != nil)
	}
	for _, id := range slices.Sorted(maps.Keys(e.BucketStringLists)) {
		m := e.BucketStringLists[id]
		var l []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			l = append(l, m[k]...)
		}
		str(id, l, m != nil)
	}
	for _, id := range slices.Sorted(maps.Keys(e.BucketTops)) {
		m := e.BucketTops[id]
		if m == nil {
			num(id, nil, false)
			continue
		}
		var tv topValues
		for _, k := range slices.Sorted(maps.Keys(m)) {
			tv.add(m[k]) // a null or unreadable bucket adds nothing
		}
		tv.pass(id, num, str)
	}
}

// topValues collects the values of served top_k texts, numbers and
// strings apart.
type topValues struct {
	nums []float64
	strs []string
}

// add appends the values of t, most frequent first; false if t is null or
// does not parse.
func (tv *topValues) add(t *lookuplog.ServedTop) bool {
	if t == nil {
		return false
	}
	var top []struct {
		Value any `json:"value"`
	}
	if err := json.Unmarshal(t.Value, &top); err != nil || top == nil {
		return false
	}
	for _, x := range top {
		switch v := x.Value.(type) {
		case string:
			tv.strs = append(tv.strs, v)
		case float64:
			tv.nums = append(tv.nums, v)
		case bool:
			b := 0.0
			if v {
				b = 1
			}
			tv.nums = append(tv.nums, b)
		}
	}
	return true
}

// pass gives the values collected to str if any is a string, else to num.
func (tv *topValues) pass(id string, num func(string, []float64, bool), str func(string, []string, bool)) {
	if len(tv.strs) > 0 {
		str(id, tv.strs, true)
		return
	}
	num(id, tv.nums, true)
}
