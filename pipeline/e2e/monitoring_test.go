package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// gauges returns the values of metric name in g by the label set
// "feature@version".
func freshnessGauges(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "featurepipe_feature_freshness_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[label(m, "feature")+"@"+label(m, "version")] = m.GetGauge().GetValue()
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// produceAt produces events with the Kafka record timestamp at (zero: the
// producer's clock).
func produceAt(t testing.TB, cl *kgo.Client, cfg *config.File, at time.Time, evs ...event) {
	t.Helper()
	var recs []*kgo.Record
	for _, e := range evs {
		enc, err := produce.NewEncoder(cfg, e.source)
		if err != nil {
			t.Fatal(err)
		}
		r, err := enc.Record(testkit.Event(e.source, e.key, e.ts, e.amount))
		if err != nil {
			t.Fatal(err)
		}
		r.Timestamp = at
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestFeatureFreshness: the worker exports, per feature version, its clock
// minus the newest event time APPLIED to that version: the newest, not the
// last to arrive, and an event dropped as too late for a version does not
// count for it. A version with nothing applied is absent.
func TestFeatureFreshness(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	now := time.Now().Truncate(time.Millisecond)
	reg := prometheus.NewRegistry()
	w, _ := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, Registerer: reg, Now: func() time.Time { return now }},
		filepath.Join(t.TempDir(), "w"))
	newest := now.Add(-10 * time.Second).UnixMilli()
	// The newest transaction first, then older ones (also of other keys and
	// so other partitions); the only login is too late for its 1h window.
	produceAt(t, cl, cfg, time.Time{},
		event{"transactions", "u1", newest, 5},
		event{"transactions", "u1", newest - 60_000, 6},
		event{"transactions", "u2", newest - 3_600_000, 7},
		event{"logins", "u1", now.Add(-3 * time.Hour).UnixMilli(), 0})
	want := float64(now.UnixMilli()-newest) / 1000
	var got map[string]float64
	// Every event applied (the partitions of u1 and u2 may be applied in
	// either order, in separate polls on Apache Kafka), every transactions
	// feature exported. The count first: the worker makes a batch's event
	// times visible before its count, so gauges read after the count of 4
	// include every event.
	waitFor(t, "freshness of every transactions feature, every event applied", 60*time.Second, func() bool {
		if eventsApplied(w) != 4 {
			return false
		}
		got = freshnessGauges(t, reg)
		for _, f := range cfg.Features {
			if _, ok := got[f.Name+"@1"]; f.Source == "transactions" && !ok {
				return false
			}
		}
		return true
	})
	for _, f := range cfg.Features {
		id := f.Name + "@1"
		v, ok := got[id]
		switch {
		case f.Source == "logins" && ok:
			t.Errorf("%s: freshness %v exported, but its only event was dropped as too late", id, v)
		case f.Source == "transactions" && v != want:
			t.Errorf("%s: freshness %v (present %v), want %v (the newest event, produced first)", id, v, ok, want)
		}
	}
	// A newer event lowers it; an older one afterwards does not raise it.
	newer := now.Add(-2 * time.Second).UnixMilli()
	produceAt(t, cl, cfg, time.Time{}, event{"transactions", "u3", newer, 1})
	produceAt(t, cl, cfg, time.Time{}, event{"transactions", "u3", newer - 7_200_000, 1})
	waitFor(t, "freshness 2s after a newer event", 60*time.Second, func() bool {
		return freshnessGauges(t, reg)["txn_last@1"] == 2
	})
	time.Sleep(time.Second) // the older event is applied by now, or soon
	if v := freshnessGauges(t, reg)["txn_sum_1d@1"]; v != 2 {
		t.Fatalf("txn_sum_1d@1 freshness %v after an older event, want 2", v)
	}
}

// TestEndToEndLatency: the lookup replica observes, per feature tile made
// visible once it is ready, its clock minus the Kafka timestamp of the
// newest source record folded into the tile, which the worker's publisher
// puts on the feature-log record (and which lookups show as updated_at).
func TestEndToEndLatency(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	dir := t.TempDir()
	// A fixed publish interval: the two records below must be folded into
	// one publication (adaptive publication would publish each on its own).
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, FixedPublishInterval: true}, filepath.Join(dir, "w"))
	st, err := lookup.OpenStore(filepath.Join(dir, "view"), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	svc, err := lookup.New(lookup.Options{Brokers: k.Brokers, Config: cfg, Store: st, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ls := serveLookup(t, svc, st)
	waitFor(t, "lookup ready", 60*time.Second, ls.ready)

	// Source records stamped 30s ago (an older record of the same tile
	// folded in the same publication must not win), and now.
	const age = 30 * time.Second
	sent := time.Now().Add(-age).Truncate(time.Millisecond)
	ts := time.Now().Add(-time.Minute).UnixMilli()
	produceAt(t, cl, cfg, sent.Add(-time.Hour), event{"transactions", "old", ts, 1})
	produceAt(t, cl, cfg, sent, event{"transactions", "old", ts + 1, 2})
	var resp lookup.LookupResponse
	waitFor(t, "the 30s-old records visible", 60*time.Second, func() bool {
		postJSON(t, ls.url+"/v1/lookup", map[string]any{"entity": "user", "keys": []string{"old"}, "features": []string{"txn_count_life"}}, &resp)
		v := resp.Results[0].Features["txn_count_life"].Value
		return v != nil && *v == 2
	})
	if u := resp.Results[0].Features["txn_count_life"].UpdatedAt; u == nil || !u.Equal(sent) {
		t.Fatalf("updated_at %v, want the newest source record's Kafka timestamp %v", u, sent)
	}
	h := svc.Metrics().EndToEnd
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	n, sum := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
	if n == 0 {
		t.Fatal("no end-to-end latency observed")
	}
	// Every tile of the entity came from the two records: each observation
	// is 30s plus the pipeline's own latency (bounded generously).
	if mean := sum / float64(n); mean < age.Seconds() || mean > age.Seconds()+60 {
		t.Fatalf("mean end-to-end latency %.3fs over %d tiles, want 30s plus the pipeline's latency", mean, n)
	}
	if b := m.GetHistogram().GetBucket(); len(b) > 0 {
		for _, bk := range b {
			if bk.GetUpperBound() < age.Seconds() && bk.GetCumulativeCount() != 0 {
				t.Fatalf("%d observations below %vs, want none", bk.GetCumulativeCount(), bk.GetUpperBound())
			}
		}
	}
	// A record stamped now: the new observations are small.
	produceAt(t, cl, cfg, time.Now(), event{"transactions", "fresh", ts, 1})
	waitFor(t, "the fresh record observed", 60*time.Second, func() bool {
		var m2 dto.Metric
		_ = h.Write(&m2)
		if m2.GetHistogram().GetSampleCount() == n {
			return false
		}
		d := m2.GetHistogram().GetSampleSum() - sum
		k := float64(m2.GetHistogram().GetSampleCount() - n)
		if d/k >= age.Seconds() {
			t.Fatalf("fresh record: mean latency %.3fs", d/k)
		}
		return true
	})
}
