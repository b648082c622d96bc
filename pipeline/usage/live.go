package usage

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// Live is usage kept current by following the lookup log (Follow), for
// long-running readers such as the web UI: per feature version, keys served
// and lookups (requests) per clock hour over the last LiveHours hours, per
// consumer and in total, plus the last time each consumer read it and the
// keys it read over everything followed.
//
// Unlike Aggregator it has no fixed "now": an hour's bucket is kept until
// it is LiveHours old, so the windows slide as time goes on.
//
// Memory is bounded: per version, one ring of LiveHours buckets (2.7 KiB)
// per reader, with at most MaxLiveConsumers consumers of their own (later
// ones are counted as OtherConsumers), so at most about 60 KiB per version
// ever read; and a FIFO set of the last liveRequests (request, version)
// pairs seen (one pair per request with a request id), to count a request
// once however many keys it has (see Add).
// Safe for concurrent use.
type Live struct {
	partial atomic.Bool // see CaughtUp
	mu      sync.Mutex
	feats   map[string]*liveFeature
	recent  map[liveReq]struct{}
	ring    []liveReq // FIFO of recent, capacity liveRequests
	ringPos int
}

// LiveHours is how many clock hours of per-hour usage Live keeps (7 days).
const LiveHours = 7 * 24

// MaxLiveConsumers bounds the consumers Live tracks on their own per
// feature version; OtherConsumers counts the rest.
const MaxLiveConsumers = 20

// OtherConsumers is the consumer that counts, per version, every consumer
// beyond the first MaxLiveConsumers.
const OtherConsumers = "other"

// liveRequests bounds the set of recent requests (with a request id) and
// (request, version) pairs (without) used to count each request once: the
// keys of one request reach the log at about the same time, so a request is
// counted twice only when more than this many other requests or pairs were
// seen between two of its keys.
const liveRequests = 1 << 16

type liveReq struct {
	request, feature string
}

type liveFeature struct {
	hours     [LiveHours]int64 // clock hour (unix hours) of each slot
	total     *liveReader
	consumers map[string]*liveReader
}

type liveReader struct {
	keys, lookups [LiveHours]int64
	retained      int64
	last          int64 // ms
}

// NewLive returns an empty Live.
func NewLive() *Live {
	return &Live{feats: map[string]*liveFeature{}, recent: make(map[liveReq]struct{}, liveRequests), ring: make([]liveReq, liveRequests)}
}

// Add counts one lookup-log entry: one key served of each version it
// names, and one lookup per version for the first entry of a request.
// Entries without a request id (older replicas) are told apart as in
// Aggregator. An entry older than LiveHours before the newest hour seen
// only updates last use and retained keys. It is AddRecord of the entry.
func (l *Live) Add(e *lookuplog.Entry) {
	var r lookuplog.Record
	r.SetEntry(e)
	l.AddRecord(&r)
}

// AddRecord is Add for a record decoded by a lookuplog.Decoder (Follow's
// path): it keeps nothing of r but the request id of a new request. Cost:
// per version named, two map lookups under one lock; one FIFO operation
// per record.
func (l *Live) AddRecord(e *lookuplog.Record) {
	consumer := e.Consumer
	if consumer == "" {
		consumer = anonymous
	}
	// An entry with a request id is one key of that request, whose entries
	// all name the same versions (the lookup service logs every key of a
	// request with the request's features): the request is new for all of
	// them or for none, so one FIFO entry per request counts it, one map
	// operation per entry instead of one per version. Entries without one
	// (older replicas) are told apart per version, as in Aggregator.
	req, perRequest := e.Request, e.Request != ""
	if !perRequest {
		req = fmt.Sprintf("%s\x00%s\x00%s\x00%d", e.Entity, consumer, e.Service, e.At)
	}
	hour := e.At / int64(time.Hour/time.Millisecond)
	slot := int(hour % LiveHours)
	if slot < 0 {
		slot += LiveHours
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	newReq := perRequest && l.firstOf(liveReq{request: req})
	// Every section's features: numbers, lists, strings, bucketed maps, tops.
	e.FeatureIDs(func(id string) {
		f := l.feats[id]
		if f == nil {
			f = &liveFeature{total: &liveReader{}, consumers: map[string]*liveReader{}}
			l.feats[id] = f
		}
		c := consumer
		r := f.consumers[c]
		if r == nil {
			if len(f.consumers) >= MaxLiveConsumers {
				c = OtherConsumers
				r = f.consumers[c]
			}
			if r == nil {
				r = &liveReader{}
				f.consumers[c] = r
			}
		}
		if !perRequest {
			newReq = l.firstOf(liveReq{req, id})
		}
		inRing := true
		switch {
		case f.hours[slot] == hour:
		case f.hours[slot] < hour: // the slot held an older hour: reuse it
			f.hours[slot] = hour
			f.total.clear(slot)
			for _, c := range f.consumers {
				c.clear(slot)
			}
		default: // older than the ring holds
			inRing = false
		}
		f.total.add(slot, e.At, inRing, newReq)
		r.add(slot, e.At, inRing, newReq)
	})
}

// add counts one key served at time at (ms) in slot (if inRing), and a
// lookup if newReq.
func (r *liveReader) add(slot int, at int64, inRing, newReq bool) {
	r.retained++
	r.last = max(r.last, at)
	if inRing {
		r.keys[slot]++
		if newReq {
			r.lookups[slot]++
		}
	}
}

func (r *liveReader) clear(slot int) { r.keys[slot], r.lookups[slot] = 0, 0 }

// firstOf records k in the FIFO set and reports whether it was new; l.mu
// is held.
func (l *Live) firstOf(k liveReq) bool {
	if _, ok := l.recent[k]; ok {
		return false
	}
	old := l.ring[l.ringPos]
	if old != (liveReq{}) {
		delete(l.recent, old)
	}
	l.ring[l.ringPos] = k
	l.ringPos = (l.ringPos + 1) % len(l.ring)
	l.recent[k] = struct{}{}
	return true
}

// HourCount is the usage of one clock hour.
type HourCount struct {
	Hour    time.Time // start of the hour, UTC
	Keys    int64
	Lookups int64
}

// Series is one reader's usage of a version per hour.
type Series struct {
	// Consumer is the consumer's name ("" for the total of all consumers).
	Consumer string
	// Hours are the hours, oldest first, ending with the hour holding now.
	Hours []HourCount
	// Keys and Lookups add Hours up.
	Keys, Lookups int64
	// KeysRetained counts the keys over everything followed (any age).
	KeysRetained int64
	// LastUsed is the newest request time seen (zero: never).
	LastUsed time.Time
}

// LiveStats is a version's usage as of a time.
type LiveStats struct {
	Feature string
	// Total sums every consumer; Consumers are sorted by keys in the hours
	// asked for, most first, then by name.
	Total     Series
	Consumers []Series
}

// Stats returns the usage of version id in the hours hours up to and
// including the hour holding now (1 <= hours <= LiveHours), or nil if
// nobody read it. Cost: O(hours × consumers).
func (l *Live) Stats(id string, now time.Time, hours int) *LiveStats {
	hours = min(max(hours, 1), LiveHours)
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.feats[id]
	if f == nil {
		return nil
	}
	st := &LiveStats{Feature: id, Total: f.series("", f.total, now, hours)}
	for name, r := range f.consumers {
		st.Consumers = append(st.Consumers, f.series(name, r, now, hours))
	}
	slices.SortFunc(st.Consumers, func(a, b Series) int {
		return cmp.Or(cmp.Compare(b.Keys, a.Keys), cmp.Compare(a.Consumer, b.Consumer))
	})
	return st
}

// Summary is one version's usage at a glance.
type Summary struct {
	// Keys24h and Lookups24h count the last 24 clock hours (the current
	// one included).
	Keys24h, Lookups24h int64
	LastUsed            time.Time
}

// Summaries returns, per version read at least once, its usage at a
// glance as of now. Cost: O(versions × 24).
func (l *Live) Summaries(now time.Time) map[string]Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]Summary, len(l.feats))
	h := now.UnixMilli() / int64(time.Hour/time.Millisecond)
	for id, f := range l.feats {
		s := Summary{LastUsed: time.UnixMilli(f.total.last).UTC()}
		for i := range 24 {
			hr := h - int64(i)
			slot := int(hr % LiveHours)
			if f.hours[slot] == hr {
				s.Keys24h += f.total.keys[slot]
				s.Lookups24h += f.total.lookups[slot]
			}
		}
		out[id] = s
	}
	return out
}

// ConsumerKeys returns, per version and consumer, the keys served over
// everything followed: the shape of lineage.Consumers.
func (l *Live) ConsumerKeys() map[string]map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]map[string]int64, len(l.feats))
	for id, f := range l.feats {
		m := make(map[string]int64, len(f.consumers))
		for name, r := range f.consumers {
			m[name] = r.retained
		}
		out[id] = m
	}
	return out
}

func (f *liveFeature) series(name string, r *liveReader, now time.Time, hours int) Series {
	s := Series{Consumer: name, KeysRetained: r.retained}
	if r.last != 0 {
		s.LastUsed = time.UnixMilli(r.last).UTC()
	}
	h := now.UnixMilli() / int64(time.Hour/time.Millisecond)
	s.Hours = make([]HourCount, hours)
	for i := range hours {
		hr := h - int64(hours-1-i)
		hc := HourCount{Hour: time.UnixMilli(hr * int64(time.Hour/time.Millisecond)).UTC()}
		slot := int(hr % LiveHours)
		if slot >= 0 && f.hours[slot] == hr {
			hc.Keys, hc.Lookups = r.keys[slot], r.lookups[slot]
		}
		s.Hours[i] = hc
		s.Keys += hc.Keys
		s.Lookups += hc.Lookups
	}
	return s
}

// Follow reads the lookup-log topic into l, from the first record
// appended at or after from (zero: the topic's start, everything it
// retains), and keeps following it until ctx ends; it returns nil then. A
// topic that does not exist yet is followed once it does (metadata is
// refreshed every 5 s). Undecodable records are skipped and logged (the
// first ten). It uses no consumer group and commits nothing: every
// follower replays the log from from at start, which costs one decode per
// entry since then (pass now minus UnusedAfter to know last use over 30
// days without replaying a longer retention). also, if not nil, is called
// with every record after l counted it (see the package-level Follow).
//
// l is partial (CaughtUp reports false) from the call, or from
// BeginCatchUp, until Follow has read the records the topic held when it
// started.
func (l *Live) Follow(ctx context.Context, conn kafka.Conn, topic string, from time.Time, log *zap.Logger, also func(*lookuplog.Record)) error {
	l.BeginCatchUp()
	add := l.AddRecord
	if also != nil {
		add = func(r *lookuplog.Record) { l.AddRecord(r); also(r) }
	}
	return Follow(ctx, conn, topic, from, log, add, func() { l.partial.Store(false) })
}

// BeginCatchUp marks l partial until a Follow of it has read what the
// lookup log held when it started: call it before l is shown when Follow
// starts concurrently (Follow marks it too, but a reader could come first).
func (l *Live) BeginCatchUp() { l.partial.Store(true) }

// CaughtUp reports whether l's counts are complete: false while its
// Follow is still reading the records the lookup log held when it started
// (from its from time), so that a version used in that part of the log
// would look unused. A Live that is not followed is complete.
func (l *Live) CaughtUp() bool { return !l.partial.Load() }

// followFetchMinBytes and followFetchMaxWait shape Follow's fetches: the
// broker answers once 256 KiB (about a thousand records) are there, or
// after 500 ms, so usage shows a lookup within about half a second.
const (
	followFetchMinBytes = 256 << 10
	followFetchMaxWait  = 500 * time.Millisecond
)

// Follow is Live.Follow for any reader of lookup-log records: it passes
// each decoded record to add (in one goroutine), so that several readers
// (usage, served-value statistics) share one decode per record. The
// Record is reused for the next one (one lookuplog.Decoder): add must not
// keep it or its slices.
//
// It first reads the topic up to the end offsets it has when Follow
// starts (kafka.ToEnd: the last stable offsets), from the first offset at
// or after from, retrying every second while Kafka is unreachable; then it
// calls caughtUp (if not nil) once and goes on from where it stopped.
// caughtUp is never called if ctx ends first. Partitions added to the
// topic after the start are not followed (a topic that did not exist at
// the start is followed whole once it does).
func Follow(ctx context.Context, conn kafka.Conn, topic string, from time.Time, log *zap.Logger, add func(*lookuplog.Record), caughtUp func()) error {
	if log == nil {
		log = zap.NewNop()
	}
	skipped := 0
	var dec lookuplog.Decoder
	var rec lookuplog.Record
	apply := func(r *kgo.Record) {
		for b := range lookuplog.Entries(r.Value) {
			if err := dec.Decode(b, &rec); err != nil {
				if skipped++; skipped <= 10 {
					log.Warn("skipping an unreadable lookup-log entry", zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset), zap.Error(err))
				}
				continue
			}
			add(&rec)
		}
	}
	base, err := kafka.BaseOpts(conn, "featurepipe-usage-live", log)
	if err != nil {
		return fmt.Errorf("lookup log client: %w", err)
	}
	admin, err := kgo.NewClient(base...)
	if err != nil {
		return fmt.Errorf("lookup log client: %w", err)
	}
	var adjust func(kafka.Ranges) error
	reset := kgo.NewOffset().AtStart()
	if !from.IsZero() {
		adjust = func(rs kafka.Ranges) error { return kafka.StartAt(ctx, admin, topic, from.UnixMilli(), rs) }
		reset = kgo.NewOffset().AfterMilli(from.UnixMilli())
	}
	next, err := kafka.CatchUp(ctx, admin, topic, adjust, apply,
		func(err error) { log.Warn("waiting for the lookup log", zap.String("topic", topic), zap.Error(err)) })
	admin.Close()
	if err != nil { // CatchUp fails only when ctx ends
		return nil
	}
	if caughtUp != nil {
		caughtUp()
	}
	opts := append(append(base, kafka.FollowFrom(topic, next, reset)...),
		// Under load, fewer and larger fetches (the broker answers once
		// followFetchMinBytes are there): every replica's follower reads
		// every replica's records, so per-fetch work on the broker and
		// here adds up. A quiet log is seen within followFetchMaxWait.
		kgo.FetchMinBytes(followFetchMinBytes), kgo.FetchMaxWait(followFetchMaxWait))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("lookup log client: %w", err)
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachRecord(apply)
	}
}
