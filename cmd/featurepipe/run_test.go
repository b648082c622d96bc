package main

import (
	"context"
	"errors"
	"github.com/featurepipe/featurepipe/internal/httpserve"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/state"
)

// A worker whose --metrics port is taken fails at start-up before anything
// runs: no goroutine of it is left, it registered nothing in the broker, and
// its store was closed (it opens again) exactly once (no close error).
func TestTakenPortFailsStartUpWithNothingStarted(t *testing.T) {
	f := newProduceFixture(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	before := goleak.IgnoreCurrent()
	dateUpdater := goleak.IgnoreAnyFunction(httpserve.DateUpdater)
	data := t.TempDir()
	// The context outlives the call (as a process's signal context does until
	// exit): whatever the failed start-up left running keeps running.
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	var out, errOut strings.Builder
	code := run(runCtx, []string{"worker", "--brokers", f.brokers, "--config", f.config, "--data", data,
		"--metrics", taken.Addr().String(), "--log-level", "error"}, &out, &errOut)
	stderr := errOut.String()
	if code != 1 || !strings.Contains(stderr, "listen on "+taken.Addr().String()) {
		t.Fatalf("exit %d, stderr %q; want 1 and the listen error", code, stderr)
	}
	if strings.Contains(stderr, "close") {
		t.Errorf("closing failed (closed twice?): %s", stderr)
	}
	// Nothing of the worker runs on: no client, no loop.
	if err := goleak.Find(before, dateUpdater); err != nil {
		t.Fatalf("the failed start-up left goroutines running: %v", err)
	}
	// Nothing started: the worker never registered its features.
	cfg, err := config.Load(f.config)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, cfg.Kafka.RegistryTopic)
	if err != nil {
		t.Fatal(err)
	}
	if td, ok := topics[cfg.Kafka.RegistryTopic]; ok && td.Err == nil {
		t.Fatalf("the registry topic %s exists: the worker ran", cfg.Kafka.RegistryTopic)
	}
	// The store was closed: Pebble's lock is free.
	st, err := state.Open(filepath.Join(data, "worker"), state.Options{})
	if err != nil {
		t.Fatalf("the worker store is still open: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// app.run stops every component when the first returns, and close runs
// after all have stopped, in reverse order, once.
func TestAppStopsAllThenClosesInReverse(t *testing.T) {
	a := &app{}
	var events []string
	record := func(s string) { events = append(events, s) } // app.run has returned before close: no race
	stopped := make(chan string, 2)
	a.onClose("first", func() error { record("close first"); return nil })
	a.onClose("second", func() error { record("close second"); return errors.New("boom") })
	a.add("fails", func(ctx context.Context) error { stopped <- "fails"; return errors.New("broken") })
	a.add("waits", func(ctx context.Context) error { <-ctx.Done(); stopped <- "waits"; return ctx.Err() })
	err := a.run(context.Background())
	if err == nil || err.Error() != "fails: broken" {
		t.Fatalf("run: %v", err)
	}
	if len(stopped) != 2 {
		t.Fatalf("%d components stopped before run returned, want 2", len(stopped))
	}
	cerr := a.close()
	if cerr == nil || !strings.Contains(cerr.Error(), "close second: boom") {
		t.Fatalf("close: %v", cerr)
	}
	if a.close() != nil || strings.Join(events, ",") != "close second,close first" {
		t.Fatalf("events %v; want each closer once, in reverse", events)
	}
}
