package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/ui"
	featureusage "github.com/featurepipe/featurepipe/pipeline/usage"
)

// withUI returns the lookup API with the web catalog (pipeline/ui) mounted
// at /ui/ in front of it, and adds to a the component that keeps the UI's
// usage current by following the lookup-log topic. The UI reads the
// replica's own registry view, obeys its tokens (a browser signs in with
// one, see package ui) and sends the console's lookups to the same API.
//
// With feed non-nil, the feature pages show monitoring (freshness, drift
// against the training baseline, the value distribution now and then),
// and feed is refreshed every few seconds by a component added to a.
func withUI(a *app, svc *lookup.Service, brokers []string, cfg *config.File, tokens *lookup.Tokens, feed *monitor.Feed, log *zap.Logger) (http.Handler, error) {
	api := svc.Handler()
	live := featureusage.NewLive()
	o := ui.Options{Config: cfg, Registry: svc.Registry(), Usage: live, API: api, Log: log.Named("ui")}
	if tokens != nil {
		o.Tokens = tokens
	}
	if feed != nil {
		o.Monitor = uiMonitor{feed, cfg}
		mlog := log.Named("monitor")
		a.add("monitoring for the web catalog", func(ctx context.Context) error {
			return feed.Run(ctx, monitorRefresh, func(err error) { mlog.Warn("worker statistics", zap.Error(err)) })
		})
	}
	u, err := ui.New(o)
	if err != nil {
		return nil, fmt.Errorf("web UI: %w", err)
	}
	a.add("usage from the lookup log", func(ctx context.Context) error {
		// From 30 days back: enough to tell unused versions, without
		// replaying a longer retention at every start.
		return live.Follow(ctx, kafka.ConnOf(brokers, cfg), cfg.Kafka.LookupLogTopic, time.Now().Add(-featureusage.UnusedAfter), log.Named("usage"))
	})
	mux := http.NewServeMux()
	mux.Handle("/ui/", u)
	mux.Handle("/ui", u)
	mux.Handle("/", api)
	return mux, nil
}

// monitorRefresh is how often the web catalog re-reads the workers'
// statistics.
const monitorRefresh = 5 * time.Second

// uiMonitor shows a monitor.Feed on the web catalog's feature pages: the
// figures and verdicts `featurepipe monitor` prints, with each version's
// thresholds from the feature file.
type uiMonitor struct {
	feed *monitor.Feed
	cfg  *config.File
}

// Feature implements ui.Monitor.
func (m uiMonitor) Feature(id string) (ui.Monitoring, bool) {
	f, err := m.cfg.Feature(id)
	if err != nil {
		return ui.Monitoring{}, false
	}
	th := thresholdsOf(f)
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
