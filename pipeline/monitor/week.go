package monitor

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/state"
)

// The week-earlier baseline: with LiveOptions.Week, a Live compares each
// feature version's last 24 hours with the same 24 hours seven days
// earlier, from hourly statistics it keeps for WeekHours hours (and, with
// LiveOptions.Hours, durably: a restarted worker has its week back, it
// does not wait a week).

// WeekBaselineName is the baseline label of the week-earlier comparison
// (featurepipe_feature_drift_psi{baseline="week"}, ...).
const WeekBaselineName = "week"

// WeekHours is how many hourly statistics a Live keeps per version with
// LiveOptions.Week: the current 24 hours and the 24 hours seven days
// earlier, and the days between (8 days).
const WeekHours = 8 * 24

// DefaultFlushEvery is LiveOptions.FlushEvery's default.
const DefaultFlushEvery = time.Minute

const hourMS = int64(time.Hour / time.Millisecond)

// Hour is one feature version's statistics over one hour, serialized
// (Stats' JSON), as an HourStore keeps it.
type Hour struct {
	Start int64 // epoch ms, a multiple of an hour
	ID    string
	Stats []byte
}

// HourStore keeps a Live's hourly statistics durably (LiveOptions.Hours).
// A Live calls it under its lock, from Commit (at most every FlushEvery)
// and Flush.
type HourStore interface {
	// LoadHours calls fn for every hour kept, in no particular order.
	LoadHours(fn func(Hour) error) error
	// SaveHours writes hours (replacing those of the same start and id)
	// and deletes every hour that starts before `before`, atomically.
	SaveHours(hours []Hour, before int64) error
}

// StoreHours keeps hourly statistics in a Pebble state store (the worker's),
// under keys.StatsHour keys, outside every partition's range (snapshots and
// partition hand-offs do not carry them). Writes are not fsynced: a machine
// crash may lose the last FlushEvery of statistics, nothing else.
func StoreHours(st *state.Store) HourStore { return storeHours{st} }

type storeHours struct{ st *state.Store }

func (s storeHours) LoadHours(fn func(Hour) error) (err error) {
	lo, hi := keys.StatsHours()
	it, err := s.st.DB().NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("read statistics hours: %w", err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("read statistics hours: %w", cerr)
		}
	}()
	for it.First(); it.Valid(); it.Next() {
		start, id, err := keys.ParseStatsHour(it.Key())
		if err != nil {
			return err
		}
		if err := fn(Hour{Start: start, ID: id, Stats: append([]byte(nil), it.Value()...)}); err != nil {
			return err
		}
	}
	return nil
}

func (s storeHours) SaveHours(hours []Hour, before int64) error {
	b := s.st.NewBatch()
	lo, hi := keys.StatsHoursBefore(before)
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		b.Close()
		return fmt.Errorf("save statistics hours: %w", err)
	}
	for _, h := range hours {
		if err := b.Set(keys.StatsHour(h.Start, h.ID), h.Stats, nil); err != nil {
			b.Close()
			return fmt.Errorf("save statistics hours: %w", err)
		}
	}
	if err := s.st.CommitNoSync(b); err != nil {
		return fmt.Errorf("save statistics hours: %w", err)
	}
	return nil
}

// weekSpec is the shape of the hourly ring.
var weekSpec = ringSpec{bucket: hourMS, buckets: WeekHours}

// hourRef names one hour of one version.
type hourRef struct {
	id    string
	start int64
}

// weekLocked returns version f's statistics over the 24 hours up to now
// (the hour of now and the 23 before) and over the same hours seven days
// earlier; nil when none. mu held.
func (l *Live) weekLocked(f *liveFeature, now int64) (current, earlier *Stats) {
	if !l.o.Week {
		return nil, nil
	}
	h := now / hourMS * hourMS
	r := &f.rings[l.weekRing]
	return r.between(h-23*hourMS, h), r.between(h-7*24*hourMS-23*hourMS, h-7*24*hourMS)
}

// between merges the sub-windows whose start is in [from, to]; nil when
// none has values.
func (r *ring) between(from, to int64) *Stats {
	var out *Stats
	for i, s := range r.slots {
		if s == nil || r.starts[i] < from || r.starts[i] > to {
			continue
		}
		if out == nil {
			out = NewStats()
		}
		_ = out.Merge(s) // one kind per version: cannot fail
	}
	return out
}

// loadHours restores the hours of the last WeekHours from LiveOptions.Hours
// and forgets older ones. Called by NewLive.
func (l *Live) loadHours() error {
	now := l.o.Now().UnixMilli()
	from := now/hourMS*hourMS - (WeekHours-1)*hourMS
	err := l.o.Hours.LoadHours(func(h Hour) error {
		if h.Start < from || h.Start > now {
			return nil
		}
		s := NewStats()
		if err := json.Unmarshal(h.Stats, s); err != nil {
			return fmt.Errorf("statistics of %s at %s: %w", h.ID, time.UnixMilli(h.Start).UTC(), err)
		}
		f := l.featureLocked(h.ID)
		r := &f.rings[l.weekRing]
		slot := int(h.Start / hourMS % WeekHours)
		r.slots[slot], r.starts[slot] = s, h.Start
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore hourly feature statistics: %w", err)
	}
	if err := l.o.Hours.SaveHours(nil, from); err != nil {
		return err
	}
	return nil
}

// featureLocked returns version id's liveFeature, created when new (its
// name and version from the id, name@version). mu held (or not shared yet).
func (l *Live) featureLocked(id string) *liveFeature {
	f := l.features[id]
	if f == nil {
		name, version := id, ""
		if i := strings.LastIndexByte(id, '@'); i >= 0 {
			name, version = id[:i], id[i+1:]
		}
		f = &liveFeature{name: name, version: version}
		for _, spec := range l.rings {
			f.rings = append(f.rings, newRing(spec.buckets))
		}
		l.features[id] = f
	}
	return f
}

// flushLocked writes the hours changed since the last flush to
// LiveOptions.Hours and deletes those older than WeekHours. mu held.
func (l *Live) flushLocked(now int64) error {
	l.lastFlush = now
	if l.o.Hours == nil || len(l.dirty) == 0 {
		return nil
	}
	hours := make([]Hour, 0, len(l.dirty))
	for ref := range l.dirty {
		f := l.features[ref.id]
		if f == nil {
			continue
		}
		r := &f.rings[l.weekRing]
		slot := int(ref.start / hourMS % WeekHours)
		if r.starts[slot] != ref.start || r.slots[slot] == nil {
			continue // already rolled out of the week
		}
		b, err := json.Marshal(r.slots[slot])
		if err != nil {
			return fmt.Errorf("save statistics of %s: %w", ref.id, err)
		}
		hours = append(hours, Hour{Start: ref.start, ID: ref.id, Stats: b})
	}
	if err := l.o.Hours.SaveHours(hours, now/hourMS*hourMS-(WeekHours-1)*hourMS); err != nil {
		return err
	}
	clear(l.dirty)
	return nil
}

// Flush writes the hourly statistics not saved yet to LiveOptions.Hours
// (a no-op without it, or without LiveOptions.Week). Call it when the
// worker stops, after its last publication and before its store closes.
func (l *Live) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flushLocked(l.o.Now().UnixMilli())
}

// WeekSnapshot is a version's last 24 hours and the same 24 hours seven
// days earlier (GET /v1/stats, "week").
type WeekSnapshot struct {
	Current *Stats `json:"current,omitempty"`
	Earlier *Stats `json:"earlier,omitempty"`
}

// MergeWeek merges several workers' week statistics per version, current
// and earlier apart.
func MergeWeek(snaps []Snapshot) (map[string]*WeekSnapshot, error) {
	out := map[string]*WeekSnapshot{}
	for _, s := range snaps {
		for _, f := range s.Features {
			if f.Week == nil {
				continue
			}
			m := out[f.ID]
			if m == nil {
				m = &WeekSnapshot{}
				out[f.ID] = m
			}
			for _, p := range []struct {
				dst **Stats
				src *Stats
			}{{&m.Current, f.Week.Current}, {&m.Earlier, f.Week.Earlier}} {
				if p.src == nil {
					continue
				}
				if *p.dst == nil {
					*p.dst = NewStats()
				}
				if err := (*p.dst).Merge(p.src); err != nil {
					return nil, fmt.Errorf("%s: %w", f.ID, err)
				}
			}
		}
	}
	return out, nil
}
