package monitor

import (
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/featurepipe/featurepipe/internal/state"
)

// weekGauge returns the gauge name{feature=a, baseline=week}; ok false when
// absent.
func weekGauge(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["feature"] == "a" && labels["version"] == "1" && labels["baseline"] == WeekBaselineName {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// weekRun feeds a Live (Week, hours in a Pebble store under dir) values
// N(100, 10) over hours 20 to 1 before t0 minus seven days, then values
// N(100 + shift, 10) over the 20 hours before t0, and returns the PSI
// exported against the week-earlier baseline at t0. With restart, the
// first Live is flushed and its store closed, and a new Live on the
// reopened store takes the current values: a worker restarted between
// the two weeks.
func weekRun(t *testing.T, seed uint64, shift float64, restart bool) float64 {
	t.Helper()
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 30, 18, 30, 0, 0, time.UTC)
	now := t0.Add(-7*24*time.Hour - 20*time.Hour)
	rng := rand.New(rand.NewPCG(seed, 99))
	open := func() (*state.Store, *Live, *prometheus.Registry) {
		st, err := state.Open(filepath.Join(dir, "w"), state.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		l, err := NewLive(reg, LiveOptions{Week: true, Hours: StoreHours(st), Now: func() time.Time { return now },
			OnError: func(err error) { t.Errorf("saving hours: %v", err) }})
		if err != nil {
			t.Fatal(err)
		}
		return st, l, reg
	}
	feed := func(l *Live, until time.Time, mean float64) {
		for now.Before(until) {
			b := l.NewBatch()
			for range 20 {
				v := mean + 10*rng.NormFloat64()
				b.Add("a@1", "a", 1, &v)
			}
			if rng.IntN(20) == 0 {
				b.Add("a@1", "a", 1, nil)
			}
			if err := l.Commit(b); err != nil {
				t.Fatal(err)
			}
			now = now.Add(7 * time.Minute)
		}
	}
	st, l, reg := open()
	feed(l, t0.Add(-7*24*time.Hour-time.Hour), 100)
	now = t0.Add(-20 * time.Hour)
	if restart {
		if err := l.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		st, l, reg = open()
	}
	defer st.Close()
	if _, ok := weekGauge(t, reg, "featurepipe_feature_drift_psi"); ok {
		t.Fatal("week PSI without current values")
	}
	feed(l, t0, 100+shift)
	psi, ok := weekGauge(t, reg, "featurepipe_feature_drift_psi")
	if !ok {
		t.Fatalf("seed %d: no featurepipe_feature_drift_psi{baseline=%q}", seed, WeekBaselineName)
	}
	if _, ok := weekGauge(t, reg, "featurepipe_feature_drift_ks"); !ok {
		t.Errorf("seed %d: no week KS", seed)
	}
	if _, ok := weekGauge(t, reg, "featurepipe_feature_null_rate_change"); !ok {
		t.Errorf("seed %d: no week null-rate change", seed)
	}
	snap := l.Snapshot()
	if len(snap.Features) != 1 || snap.Features[0].Week == nil || snap.Features[0].Week.Earlier == nil ||
		snap.Features[0].Week.Earlier.Count() < 2000 || snap.Features[0].Week.Current.Count() < 2000 {
		t.Errorf("seed %d: snapshot week %+v, want both sides with 20 hours of values", seed, snap.Features)
	}
	return psi
}

// TestWeekBaseline: the last 24 hours against the same hours a week
// earlier stay below the 0.2 PSI threshold without a shift and cross it
// with a one-sigma shift, over several seeds, whether the worker ran all
// week or restarted in between (the hours come back from its store).
func TestWeekBaseline(t *testing.T) {
	const threshold = 0.2
	for seed := uint64(1); seed <= 4; seed++ {
		restart := seed != 1
		same, shifted := weekRun(t, seed, 0, restart), weekRun(t, seed, 10, restart)
		t.Logf("seed %d (restart %v): week PSI %.4f without shift, %.4f shifted", seed, restart, same, shifted)
		if same >= threshold {
			t.Errorf("seed %d: PSI %.4f without a shift, want below %v", seed, same, threshold)
		}
		if shifted <= threshold {
			t.Errorf("seed %d: PSI %.4f with a one-sigma shift, want above %v", seed, shifted, threshold)
		}
	}
}

// TestWeekHoursBoundedAndSavedWithoutFlush: Commit saves the changed hours
// every FlushEvery (a crash without Flush loses at most that), and the store
// never keeps hours older than WeekHours.
func TestWeekHoursBoundedAndSavedWithoutFlush(t *testing.T) {
	dir := t.TempDir()
	st, err := state.Open(filepath.Join(dir, "w"), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	l, err := NewLive(nil, LiveOptions{Week: true, Hours: StoreHours(st), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	v := 1.0
	const hours = 10 * 24
	for range hours {
		b := l.NewBatch()
		b.Add("a@1", "a", 1, &v)
		if err := l.Commit(b); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Hour)
	}
	// The last hour committed is saved: an hour passed since the flush before.
	var kept []int64
	if err := StoreHours(st).LoadHours(func(h Hour) error { kept = append(kept, h.Start); return nil }); err != nil {
		t.Fatal(err)
	}
	last := now.Add(-time.Hour).UnixMilli()
	oldest := last - (WeekHours-1)*hourMS
	if len(kept) == 0 || len(kept) > WeekHours {
		t.Fatalf("%d hours kept, want 1 to %d", len(kept), WeekHours)
	}
	for _, h := range kept {
		if h < oldest-hourMS || h > last {
			t.Errorf("hour %s kept: want only the last %d hours", time.UnixMilli(h).UTC(), WeekHours)
		}
	}
	// Without Flush (a crash), a new Live finds the hours saved by Commit.
	l2, err := NewLive(nil, LiveOptions{Week: true, Hours: StoreHours(st), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	cur, earlier := l2.weekLocked(l2.features["a@1"], now.UnixMilli())
	if cur == nil || cur.Count() < 20 || earlier == nil || earlier.Count() < 20 {
		t.Errorf("restored week: current %v, earlier %v: want about 24 values each", cur, earlier)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}
