package worker

// Freshness: per feature version, the newest event time applied to state.
// applyFeature keeps a running maximum per partition and feature (no lock:
// one partition is applied by one goroutine at a time); the batch commit
// copies it to an atomic once per batch; the collector
// (metrics.Freshness) folds the owned partitions at scrape time.

import "strconv"

// commitNewest makes the newest event times of the committed batch visible
// to the freshness collector. Poll goroutine, after the batch commit.
func (ps *partState) commitNewest() {
	for i, ts := range ps.newest {
		if ts > ps.fresh[i].Load() {
			ps.fresh[i].Store(ts)
		}
	}
}

// newestEvents calls emit with the newest event time committed per feature
// version over the partitions this worker owns (partitions being restored
// excluded). A partition revoked or lost no longer counts. Cost: w.mu and a
// pass over the owned partitions' features, per scrape.
func (w *Worker) newestEvents(emit func(feature, version string, newestMs int64)) {
	type fv struct {
		name    string
		version int
	}
	newest := map[fv]int64{}
	w.mu.Lock()
	for _, ps := range w.parts {
		if ps.restoring || len(ps.fresh) != len(ps.plan.Features) {
			continue
		}
		for i := range ps.plan.Features {
			f := ps.plan.Features[i].Feature
			if ts := ps.fresh[i].Load(); ts > 0 {
				k := fv{f.Name, f.Version}
				newest[k] = max(newest[k], ts)
			}
		}
	}
	w.mu.Unlock()
	for k, ts := range newest {
		emit(k.name, strconv.Itoa(k.version), ts)
	}
}

// Freshness returns, by feature id (name@version), the worker's clock minus
// the newest event time committed over the partitions it owns, in seconds
// (the featurepipe_feature_freshness_seconds gauges, for GET /v1/stats).
func (w *Worker) Freshness() map[string]float64 {
	now := w.o.Now().UnixMilli()
	out := map[string]float64{}
	w.newestEvents(func(feature, version string, newestMs int64) {
		out[feature+"@"+version] = float64(max(now-newestMs, 0)) / 1000
	})
	return out
}
