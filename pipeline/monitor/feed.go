package monitor

import (
	"context"
	"slices"
	"sync/atomic"
	"time"
)

// Feed keeps the newest merged statistics of a set of workers (their
// Snapshots, merged as Merge does) for readers that must not wait on the
// network, such as the web catalog's feature pages: Report reads the last
// merge, Refresh or Run replace it. Safe for concurrent use.
type Feed struct {
	snapshots func(context.Context) ([]Snapshot, error)
	cur       atomic.Pointer[merged]
}

// merged is one merge of every worker's snapshot.
type merged struct {
	stats map[string]*Stats
	bases map[string]*Baseline
	fresh map[string]float64
}

// NewFeed returns a Feed over snapshots, which returns every worker's
// Snapshot (GET /v1/stats of each, or an in-process Live's). The Feed is
// empty until the first Refresh.
func NewFeed(snapshots func(context.Context) ([]Snapshot, error)) *Feed {
	return &Feed{snapshots: snapshots}
}

// Refresh reads and merges every worker's snapshot now. On error the
// previous merge stays.
func (f *Feed) Refresh(ctx context.Context) error {
	snaps, err := f.snapshots(ctx)
	if err != nil {
		return err
	}
	stats, bases, fresh, err := Merge(snaps)
	if err != nil {
		return err
	}
	f.cur.Store(&merged{stats, bases, fresh})
	return nil
}

// Run refreshes every period until ctx ends (it returns nil then), passing
// each failed refresh to onErr (may be nil): a worker that is down leaves
// the previous figures, never an error to the reader.
func (f *Feed) Run(ctx context.Context, every time.Duration, onErr func(error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := f.Refresh(ctx); err != nil && onErr != nil && ctx.Err() == nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Report checks feature version id against th with the last merge (see
// Check); ok is false when no worker reported the version (no values in
// the window and no freshness). live and base are the merged window
// statistics and the baseline, nil when absent; callers must not modify
// them.
func (f *Feed) Report(id string, th Thresholds) (r FeatureReport, live *Stats, base *Baseline, ok bool) {
	m := f.cur.Load()
	if m == nil {
		return FeatureReport{}, nil, nil, false
	}
	live, base = m.stats[id], m.bases[id]
	fresh, hasFresh := m.fresh[id]
	if live == nil && !hasFresh {
		return FeatureReport{}, nil, nil, false
	}
	if !hasFresh {
		fresh = -1
	}
	return Check(id, live, base, fresh, th, MinValues), live, base, true
}

// Distribution is the share of baseline's and live's non-null values in
// the PSIBins bins PSI compares (bounded by the baseline's deciles; bin i
// holds upper[i-1] < v <= upper[i], the last bin everything above
// upper[len-1], so upper has one bound fewer than there are bins). ok is
// false when either side has no non-null value. Shares are fractions of
// each side's values, unsmoothed.
func Distribution(baseline, live *Stats) (upper, baseShare, liveShare []float64, ok bool) {
	if baseline == nil || live == nil || baseline.sketch.IsEmpty() || live.sketch.IsEmpty() {
		return nil, nil, nil, false
	}
	upper = make([]float64, 0, PSIBins-1)
	for i := 1; i < PSIBins; i++ {
		v, err := baseline.sketch.GetValueAtQuantile(float64(i) / PSIBins)
		if err != nil {
			return nil, nil, nil, false
		}
		upper = append(upper, v)
	}
	// Equal deciles (a discrete baseline) would make empty bins between
	// them: keep each bound once.
	upper = slices.Compact(upper) // quantiles never decrease
	return upper, shares(binCounts(baseline, upper)), shares(binCounts(live, upper)), true
}

// shares divides counts by their sum.
func shares(counts []float64) []float64 {
	var n float64
	for _, c := range counts {
		n += c
	}
	out := make([]float64, len(counts))
	for i, c := range counts {
		if n > 0 {
			out[i] = c / n
		}
	}
	return out
}
