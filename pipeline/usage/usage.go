// Package usage computes who reads which feature version, from the lookup
// log (the topic the lookup replicas write one lookuplog.Entry to per served
// key; see package lookuplog). It is the catalog's usage view: `featurepipe
// features` shows it, and lineage and plan ask it which consumers still read
// a version (ConsumersLast7d).
//
// Units, per feature version and window (the last 1h, 24h and 7d before
// "now", an entry counted when now-window <= at <= now, or later: clock skew
// counts as now):
//
//   - Keys: keys served, one per lookup-log entry naming the version: the
//     unit of featurepipe_feature_lookups_total.
//   - Lookups: requests, counted as distinct request ids among those
//     entries (every key of one request carries its id). Entries of older
//     replicas, without an id, are told apart by (entity, consumer, feature
//     service, request time in ms): there, two requests of one consumer in
//     the same millisecond count once.
//
// LastUsed is the newest request time over the whole log, per version, per
// consumer and per feature service. A version is Unused when nobody read it
// in the UnusedAfter (30 days) before now (see Stats.Unused for versions
// younger than that).
//
// The counts are those of the lookup log: with `serve --lookup-log-sample`
// below 1 they are of the sampled keys, and the log's retention bounds what
// is seen (give the topic at least 30 days of retention for Unused to mean
// 30 days). Entries without a consumer (older replicas) count as
// "anonymous".
//
// Cost: Read reads the whole lookup-log topic once (kafka.ReadToEnd) and
// keeps, per version, a handful of counters per consumer and service plus
// one small set entry per request in the last 7 days; it is meant for the
// CLI, not the lookup path.
package usage

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// The windows usage is counted over, and how long without a read makes a
// version unused.
const (
	Hour        = time.Hour
	Day         = 24 * time.Hour
	Week        = 7 * Day
	UnusedAfter = 30 * Day
)

// anonymous is the consumer of entries that carry none (lookup.AnonymousConsumer).
const anonymous = "anonymous"

// Counts is the usage of one window.
type Counts struct {
	// Lookups counts requests (see the package doc).
	Lookups int64 `json:"lookups"`
	// Keys counts keys served.
	Keys int64 `json:"keys"`
}

// Windows are the counts of the last hour, day and week.
type Windows struct {
	Hour Counts `json:"1h"`
	Day  Counts `json:"24h"`
	Week Counts `json:"7d"`
}

// Reader is one consumer's or feature service's use of a version.
type Reader struct {
	Name    string  `json:"name"`
	Windows Windows `json:"counts"`
	// KeysRetained counts the keys served over everything the lookup log
	// retains (any age), for lineage.
	KeysRetained int64     `json:"keys_retained"`
	LastUsed     time.Time `json:"last_used"`
}

// Stats is the usage of one feature version.
type Stats struct {
	// Feature is the version's id, name@version.
	Feature  string    `json:"feature"`
	Windows  Windows   `json:"counts"`
	LastUsed time.Time `json:"last_used"`
	// Consumers and Services read the version at least once in the log;
	// sorted by keys served in the last 7 days, most first, then by name.
	Consumers []Reader `json:"consumers"`
	Services  []Reader `json:"services,omitempty"`
}

// Unused reports whether nobody read the version in the UnusedAfter before
// now. A nil s (never read) is unused. since, when not zero, is when the
// version appeared (its registration): a version younger than UnusedAfter
// is not yet unused, since nobody could have read it for 30 days.
func (s *Stats) Unused(since, now time.Time) bool {
	if !since.IsZero() && now.Sub(since) < UnusedAfter {
		return false
	}
	return s == nil || now.Sub(s.LastUsed) >= UnusedAfter
}

// requestID identifies a request among a version's entries.
type requestID struct {
	request                   string // the entry's id; the rest is zero when set
	entity, consumer, service string
	at                        int64
}

type reader struct {
	w        Windows
	retained int64 // keys served, over everything read
	last     int64
}

type acc struct {
	w         Windows
	last      int64
	consumers map[string]*reader
	services  map[string]*reader
	seen      map[requestID]struct{} // requests in the last week
}

// Aggregator folds lookup-log entries into per-version usage as of a fixed
// time. The zero value is not usable: use NewAggregator. Not safe for
// concurrent use.
type Aggregator struct {
	now  int64 // ms
	accs map[string]*acc
}

// NewAggregator returns an aggregator of usage as of now.
func NewAggregator(now time.Time) *Aggregator {
	return &Aggregator{now: now.UnixMilli(), accs: map[string]*acc{}}
}

// Add counts one entry: one key served of each feature version it names.
func (a *Aggregator) Add(e *lookuplog.Entry) {
	consumer := e.Consumer
	if consumer == "" {
		consumer = anonymous
	}
	age := time.Duration(max(a.now-e.At, 0)) * time.Millisecond
	rid := requestID{entity: e.Entity, consumer: consumer, service: e.Service, at: e.At}
	if e.Request != "" {
		rid = requestID{request: e.Request}
	}
	// Every section's features: numbers, lists, strings, bucketed maps, tops.
	e.FeatureIDs(func(id string) {
		x := a.accs[id]
		if x == nil {
			x = &acc{consumers: map[string]*reader{}, services: map[string]*reader{}, seen: map[requestID]struct{}{}}
			a.accs[id] = x
		}
		newRequest := false
		if age <= Week {
			if _, ok := x.seen[rid]; !ok {
				x.seen[rid] = struct{}{}
				newRequest = true
			}
		}
		x.last = max(x.last, e.At)
		count(&x.w, age, newRequest)
		c := x.consumers[consumer]
		if c == nil {
			c = &reader{}
			x.consumers[consumer] = c
		}
		c.last = max(c.last, e.At)
		c.retained++
		count(&c.w, age, newRequest)
		if e.Service != "" {
			s := x.services[e.Service]
			if s == nil {
				s = &reader{}
				x.services[e.Service] = s
			}
			s.last = max(s.last, e.At)
			s.retained++
			count(&s.w, age, newRequest)
		}
	})
}

// count adds one key, and one request when newRequest, to the windows that
// hold age. A request is new in every window that holds it: its entries
// share one time, so one age.
func count(w *Windows, age time.Duration, newRequest bool) {
	for _, c := range []struct {
		span time.Duration
		c    *Counts
	}{{Hour, &w.Hour}, {Day, &w.Day}, {Week, &w.Week}} {
		if age > c.span {
			continue
		}
		c.c.Keys++
		if newRequest {
			c.c.Lookups++
		}
	}
}

// Result returns the usage of every version seen, by id.
func (a *Aggregator) Result() map[string]*Stats {
	out := make(map[string]*Stats, len(a.accs))
	for id, x := range a.accs {
		out[id] = &Stats{Feature: id, Windows: x.w, LastUsed: time.UnixMilli(x.last).UTC(),
			Consumers: readers(x.consumers), Services: readers(x.services)}
	}
	return out
}

func readers(m map[string]*reader) []Reader {
	if len(m) == 0 {
		return nil
	}
	out := make([]Reader, 0, len(m))
	for name, r := range m {
		out = append(out, Reader{Name: name, Windows: r.w, KeysRetained: r.retained, LastUsed: time.UnixMilli(r.last).UTC()})
	}
	slices.SortFunc(out, func(a, b Reader) int {
		if c := cmp.Compare(b.Windows.Week.Keys, a.Windows.Week.Keys); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}

// Read reads the lookup-log topic up to its end offsets (kafka.ReadToEnd)
// and returns the usage of every version in it as of now, by id. An
// undecodable record is skipped (and logged on log, which may be nil); a
// topic that does not exist yet is no usage, not an error.
func Read(ctx context.Context, conn kafka.Conn, topic string, now time.Time, log *zap.Logger) (map[string]*Stats, error) {
	if log == nil {
		log = zap.NewNop()
	}
	cl, err := kafka.NewClient(conn, "featurepipe-usage", log)
	if err != nil {
		return nil, fmt.Errorf("lookup log client: %w", err)
	}
	defer cl.Close()
	agg := NewAggregator(now)
	skipped := 0
	err = kafka.ReadToEnd(ctx, cl, topic, func(r *kgo.Record) error {
		if n, err := lookuplog.DecodeEach(r.Value, agg.Add); n > 0 && skipped < 10 {
			log.Warn("skipping unreadable lookup-log entries", zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset), zap.Int("entries", n), zap.Error(err))
			skipped++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the lookup log %s: %w", topic, err)
	}
	return agg.Result(), nil
}

// ConsumersLast7d returns, per feature version id, the consumers that read
// it in the 7 days before now with their keys served in that week; versions
// nobody read that week are absent. It is Read reduced to what `plan` and
// lineage need (whom a change would hurt).
func ConsumersLast7d(ctx context.Context, conn kafka.Conn, topic string, now time.Time) (map[string]map[string]int64, error) {
	stats, err := Read(ctx, conn, topic, now, nil)
	if err != nil {
		return nil, err
	}
	return RecentConsumers(stats), nil
}

// RecentConsumers is ConsumersLast7d of stats already read.
func RecentConsumers(stats map[string]*Stats) map[string]map[string]int64 {
	return ConsumerKeys(stats, true)
}

// ConsumerKeys returns, per feature version and consumer, the keys served:
// in the last 7 days when lastWeek, else over everything the lookup log
// retains. Consumers with none are left out.
func ConsumerKeys(stats map[string]*Stats, lastWeek bool) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for id, s := range stats {
		for _, c := range s.Consumers {
			n := c.KeysRetained
			if lastWeek {
				n = c.Windows.Week.Keys
			}
			if n == 0 {
				continue
			}
			if out[id] == nil {
				out[id] = map[string]int64{}
			}
			out[id][c.Name] = n
		}
	}
	return out
}
