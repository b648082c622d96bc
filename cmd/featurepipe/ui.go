package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/ui"
	featureusage "github.com/featurepipe/featurepipe/pipeline/usage"
)

// withUI returns the lookup API with the web catalog (pipeline/ui) mounted
// at /ui/ in front of it, and adds to a the component that keeps the UI's
// usage current by following the lookup-log topic, from the catalog's
// first request on (the follower reads every replica's records: a replica
// whose catalog nobody opens does not; the first request waits up to
// firstPageWait for it to catch up, later ones until then say the usage is
// partial). The UI reads the
// replica's own registry view, obeys its tokens (a browser signs in with
// one, see package ui) and sends the console's lookups to the same API.
//
// With feed non-nil, the feature pages show monitoring (freshness, drift
// against the training baseline, the value distribution now and then),
// and feed is refreshed every few seconds by a component added to a. The
// feature pages also show the statistics of the values served to each
// consumer over the last 1h and 24h and their drift (monitor.ServedLive,
// fed by the same lookup-log follower as usage), against the feed's
// baseline or else the newest dataset with the version's statistics.
func withUI(a *app, svc *lookup.Service, brokers []string, cfg *config.File, tokens *lookup.Tokens, feed *monitor.Feed, log *zap.Logger) (http.Handler, error) {
	api := svc.Handler()
	live := featureusage.NewLive()
	live.BeginCatchUp() // partial until the follower below has read the log up to its start
	o := ui.Options{Config: cfg, Registry: svc.Registry(), Usage: live, API: api, Log: log.Named("ui")}
	if tokens != nil {
		o.Tokens = tokens
	}
	served := monitor.NewServedLive(monitor.ServedLiveOptions{})
	o.Monitor = uiMonitor{feed: feed, cfg: cfg, served: served, view: svc.Registry()}
	if feed != nil {
		mlog := log.Named("monitor")
		a.add("monitoring for the web catalog", func(ctx context.Context) error {
			return feed.Run(ctx, monitorRefresh, func(err error) { mlog.Warn("worker statistics", zap.Error(err)) })
		})
	}
	u, err := ui.New(o)
	if err != nil {
		return nil, fmt.Errorf("web UI: %w", err)
	}
	opened := newFirstRequest()
	a.add("usage from the lookup log", func(ctx context.Context) error {
		if !opened.wait(ctx) {
			return nil
		}
		// From 30 days back: enough to tell unused versions, without
		// replaying a longer retention at every start.
		return live.Follow(ctx, kafka.ConnOf(brokers, cfg), cfg.Kafka.LookupLogTopic, time.Now().Add(-featureusage.UnusedAfter), log.Named("usage"), served.AddRecord)
	})
	catalog := opened.handler(u, live.CaughtUp, firstPageWait)
	mux := http.NewServeMux()
	mux.Handle("/ui/", catalog)
	mux.Handle("/ui", catalog)
	mux.Handle("/", api)
	return mux, nil
}

// monitorRefresh is how often the web catalog re-reads the workers'
// statistics.
const monitorRefresh = 5 * time.Second

// firstRequest starts the web catalog's usage follower with the catalog's
// first request (see withUI).
type firstRequest struct {
	ch   chan struct{}
	once sync.Once
}

func newFirstRequest() *firstRequest { return &firstRequest{ch: make(chan struct{})} }

// wait blocks until the first request, and reports false if ctx ended first.
func (f *firstRequest) wait(ctx context.Context) bool {
	select {
	case <-f.ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// handler serves h, marking the first request; that one waits up to
// maxWait for ready (the follower caught up) before h answers it.
func (f *firstRequest) handler(h http.Handler, ready func() bool, maxWait time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := false
		f.once.Do(func() { close(f.ch); first = true })
		for deadline := time.Now().Add(maxWait); first && !ready() && time.Now().Before(deadline) && r.Context().Err() == nil; {
			time.Sleep(10 * time.Millisecond)
		}
		h.ServeHTTP(w, r)
	})
}

// firstPageWait is how long the web catalog's first request waits for the
// usage follower it starts to catch up before answering; a longer replay
// leaves that page, and the next ones until it ends, saying the usage is
// partial.
const firstPageWait = 2 * time.Second

// uiMonitor shows a monitor.Feed (may be nil) and the served values'
// statistics on the web catalog's feature pages: the figures and verdicts
// `featurepipe monitor` prints, with each version's thresholds from the
// feature file.
type uiMonitor struct {
	feed   *monitor.Feed
	cfg    *config.File
	served *monitor.ServedLive
	view   *registry.View // the served values' baseline without a feed's
}

// Feature implements ui.Monitor.
func (m uiMonitor) Feature(id string) (ui.Monitoring, bool) {
	f, err := m.cfg.Feature(id)
	if err != nil {
		return ui.Monitoring{}, false
	}
	th := thresholdsOf(f)
	if m.feed == nil {
		return ui.Monitoring{}, false
	}
	r, live, base, ok := m.feed.Report(id, th)
	if !ok {
		return ui.Monitoring{}, false
	}
	var out ui.Monitoring
	crossed := func(name string) bool { return slices.Contains(r.Crossed, name) }
	if r.Freshness != nil {
		d := time.Duration(*r.Freshness * float64(time.Second))
		out.Freshness = &d
	}
	out.Figures = append(out.Figures, ui.Figure{Name: "values in the window", Value: float64(r.Summary.Count)},
		ui.Figure{Name: "null rate", Value: r.Summary.NullRate})
	if r.NullRateChange != nil {
		out.Figures = append(out.Figures, ui.Figure{Name: "null rate change vs " + r.Baseline, Value: *r.NullRateChange,
			Threshold: th.NullRate, Alert: crossed("null_rate")})
	}
	if r.PSI != nil {
		out.Figures = append(out.Figures, ui.Figure{Name: "PSI vs " + r.Baseline, Value: *r.PSI, Threshold: th.PSI, Alert: crossed("psi")})
	}
	if r.KS != nil {
		out.Figures = append(out.Figures, ui.Figure{Name: "KS vs " + r.Baseline, Value: *r.KS})
	}
	if base != nil {
		if upper, b, l, ok := monitor.Distribution(base.Stats, live); ok {
			for i := range b {
				bound := math.Inf(1)
				if i < len(upper) {
					bound = upper[i]
				}
				out.Baseline = append(out.Baseline, ui.Bucket{Upper: bound, Share: b[i]})
				out.Now = append(out.Now, ui.Bucket{Upper: bound, Share: l[i]})
			}
		}
	}
	return out, true
}

// Served implements ui.ServedMonitor: per consumer and window (1h, 24h),
// the values served, their null rate and their PSI against the baseline
// (the feed's, else the newest dataset with the version's statistics),
// flagged past the feature file's thresholds. Cost: about 1 ms per
// consumer with a full day of values (BenchmarkServedLiveCheck), on the
// feature page only.
func (m uiMonitor) Served(id string) []ui.Figure {
	f, err := m.cfg.Feature(id)
	if err != nil || m.served == nil {
		return nil
	}
	th := thresholdsOf(f)
	var base *monitor.Baseline
	if m.feed != nil {
		_, _, base, _ = m.feed.Report(id, th)
	}
	if base == nil && m.view != nil {
		if b, found := datasetBaselineOf(m.view, id); found && b.Stats != nil {
			base = &b
		}
	}
	var out []ui.Figure
	for _, sr := range m.served.Check(id, base, th, monitor.MinValues) {
		crossed := func(name string) bool { return slices.Contains(sr.Crossed, name) }
		out = append(out, ui.Figure{Name: sr.Label() + ": values", Value: float64(sr.Summary.Count)},
			ui.Figure{Name: sr.Label() + ": null rate", Value: sr.Summary.NullRate, Threshold: th.NullRate, Alert: crossed("null_rate")})
		if sr.PSI != nil {
			out = append(out, ui.Figure{Name: sr.Label() + ": PSI vs " + sr.Baseline, Value: *sr.PSI, Threshold: th.PSI, Alert: crossed("psi")})
		}
	}
	return out
}
