package main

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/ui"
)

// The web catalog's monitor shows a feature's freshness, its drift against
// the training baseline (flagged past the feature file's threshold) and its
// value distribution now and then over the baseline's deciles, from the
// workers' GET /v1/stats.
func TestUIMonitorShowsDriftAndDistributions(t *testing.T) {
	cfg := testkit.WriteConfig(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
  - {name: amount_last, version: 1, entity: user, source: transactions, aggregation: last, field: amount, window: lifetime, owner: o, description: d,
     monitor: {psi: 0.3}}
  - {name: amount_sum, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: o, description: d}
`, nil)
	base := monitor.NewStats()
	for _, v := range seq(0, 1000) {
		base.AddValue(*v)
	}
	shifted := append(seq(0, 500), seq(70, 500)...) // half the values moved up
	addr := monitorWorker(t, map[string][]*float64{"amount_last@1": shifted},
		map[string]monitor.Baseline{"amount_last@1": {Name: "train@3", Stats: base}}, map[string]float64{"amount_last@1": 1.5})
	feed := monitor.NewFeed(workerStats([]string{addr}, 0))
	if err := feed.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := uiMonitor{feed: feed, cfg: cfg, served: monitor.NewServedLive(monitor.ServedLiveOptions{})}
	got, ok := m.Feature("amount_last@1")
	if !ok {
		t.Fatal("no monitoring for amount_last@1")
	}
	if got.Freshness == nil || got.Freshness.Seconds() != 1.5 {
		t.Errorf("freshness %v, want 1.5s", got.Freshness)
	}
	var psi *float64
	for _, f := range got.Figures {
		if f.Name == "PSI vs train@3" {
			psi = &f.Value
			if f.Threshold != 0.3 || f.Alert != (f.Value > 0.3) || !f.Alert {
				t.Errorf("PSI figure %+v: want the file's threshold 0.3, crossed by this shift", f)
			}
		}
	}
	if psi == nil {
		t.Fatalf("no PSI figure in %+v", got.Figures)
	}
	if len(got.Now) != monitor.PSIBins || len(got.Baseline) != monitor.PSIBins || !math.IsInf(got.Now[len(got.Now)-1].Upper, 1) {
		t.Fatalf("distributions: %d now, %d baseline buckets (want %d, the last unbounded)", len(got.Now), len(got.Baseline), monitor.PSIBins)
	}
	var nowTop, baseTop float64
	for i := range got.Now {
		if got.Now[i].Upper != got.Baseline[i].Upper {
			t.Fatalf("bucket %d bounds differ: %v vs %v", i, got.Now[i].Upper, got.Baseline[i].Upper)
		}
		if i >= 7 {
			nowTop, baseTop = nowTop+got.Now[i].Share, baseTop+got.Baseline[i].Share
		}
	}
	if nowTop < baseTop+0.2 {
		t.Errorf("the top three deciles hold %.2f of the values now and %.2f at training: the shift does not show", nowTop, baseTop)
	}
	// A version no worker reported and nobody was served has no
	// monitoring; nor an unknown id.
	if _, ok := m.Feature("amount_sum@1"); ok {
		t.Error("amount_sum@1 has monitoring, yet no worker reported it")
	}

	// Served values per consumer (from the lookup log), against the same
	// baseline: ranking is served shifted values, fraud-api trained ones.
	now := time.Now().UnixMilli()
	for i, v := range seq(0, 300) {
		x := *v + 60
		m.served.Add(&lookuplog.Entry{Entity: "user", Key: "k", At: now - int64(i), Consumer: "ranking",
			Features: map[string]*float64{"amount_last@1": &x, "amount_sum@1": v}})
		m.served.Add(&lookuplog.Entry{Entity: "user", Key: "k", At: now - int64(i), Consumer: "fraud-api",
			Features: map[string]*float64{"amount_last@1": v}})
	}
	figures := map[string]ui.Figure{}
	for _, f := range m.Served("amount_last@1") {
		figures[f.Name] = f
	}
	for name, alert := range map[string]bool{
		"served to ranking (1h): PSI vs train@3": true, "served to ranking (24h): PSI vs train@3": true,
		"served to fraud-api (1h): PSI vs train@3": false, "served to fraud-api (24h): PSI vs train@3": false,
	} {
		f, ok := figures[name]
		if !ok || f.Alert != alert || f.Threshold != 0.3 {
			t.Errorf("figure %q: %+v (present %v), want alert %v against 0.3", name, f, ok, alert)
		}
	}
	if f := figures["served to ranking (24h): values"]; f.Value != 300 {
		t.Errorf("ranking's values served over 24h: %+v, want 300", f)
	}
	// A version no worker reported has served figures alone (no baseline:
	// no PSI).
	sum := m.Served("amount_sum@1")
	if len(sum) != 4 || sum[0].Name != "served to ranking (1h): values" || sum[0].Value != 300 {
		t.Errorf("amount_sum@1: %+v, want ranking's served values and null rates", sum)
	}
	if len(m.Served("nope@1")) != 0 {
		t.Error("an unknown feature has served figures")
	}
	if _, ok := m.Feature("nope@1"); ok {
		t.Error("an unknown feature has monitoring")
	}
}

// TestCatalogStartsItsFollowerOnItsFirstRequest: the web catalog's usage
// follower waits for the catalog's first request (a replica whose catalog
// nobody opens does not read the lookup log); that request waits for it to
// catch up, at most the given time; later ones do not wait.
func TestCatalogStartsItsFollowerOnItsFirstRequest(t *testing.T) {
	f := newFirstRequest()
	started := make(chan bool, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { started <- f.wait(ctx) }()
	var caughtUp atomic.Bool
	served := 0
	h := f.handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		if served == 1 && !caughtUp.Load() {
			t.Error("the first request was answered before the follower caught up")
		}
	}), caughtUp.Load, 10*time.Second)
	select {
	case <-started:
		t.Fatal("the follower started before any request")
	case <-time.After(100 * time.Millisecond):
	}
	go func() {
		if !<-started {
			t.Error("wait reported the context's end, not the first request")
		}
		time.Sleep(50 * time.Millisecond) // the replay
		caughtUp.Store(true)
	}()
	t0 := time.Now()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/ui/", nil))
	if d := time.Since(t0); d < 50*time.Millisecond || d > 5*time.Second {
		t.Errorf("the first request took %v: want it to wait for the catch-up (~50 ms)", d)
	}
	// Later requests do not wait, even while partial.
	caughtUp.Store(false)
	t0 = time.Now()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/ui/", nil))
	if d := time.Since(t0); d > time.Second {
		t.Errorf("a later request waited %v", d)
	}
	// A first request waits at most maxWait.
	g := newFirstRequest()
	t0 = time.Now()
	g.handler(http.NotFoundHandler(), func() bool { return false }, 100*time.Millisecond).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/ui/", nil))
	if d := time.Since(t0); d < 100*time.Millisecond || d > 5*time.Second {
		t.Errorf("a first request with a replay that never ends took %v, want its 100 ms bound", d)
	}
	// Without a request, wait returns false when the context ends.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if newFirstRequest().wait(ctx2) {
		t.Error("wait reported a first request after its context ended")
	}
}
