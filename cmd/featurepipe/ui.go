package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/ui"
	featureusage "github.com/featurepipe/featurepipe/pipeline/usage"
)

// withUI returns the lookup API with the web catalog (pipeline/ui) mounted
// at /ui/ in front of it, and adds to a the component that keeps the UI's
// usage current by following the lookup-log topic. The UI reads the
// replica's own registry view, obeys its tokens (a browser signs in with
// one, see package ui) and sends the console's lookups to the same API.
func withUI(a *app, svc *lookup.Service, brokers []string, cfg *config.File, tokens *lookup.Tokens, log *zap.Logger) (http.Handler, error) {
	api := svc.Handler()
	live := featureusage.NewLive()
	o := ui.Options{Config: cfg, Registry: svc.Registry(), Usage: live, API: api, Log: log.Named("ui")}
	if tokens != nil {
		o.Tokens = tokens
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
