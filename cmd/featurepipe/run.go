package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/logging"
	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// group runs components until the first returns; then it cancels the rest
// and waits for them (Prometheus' run group, in a few lines).
type group struct {
	wg    sync.WaitGroup
	once  sync.Once
	err   error
	ctx   context.Context
	abort context.CancelFunc
}

func newGroup(ctx context.Context) *group {
	g := &group{}
	g.ctx, g.abort = context.WithCancel(ctx)
	return g
}

func (g *group) Go(name string, fn func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := fn(g.ctx)
		g.once.Do(func() {
			if err != nil && !errors.Is(err, context.Canceled) {
				g.err = fmt.Errorf("%s: %w", name, err)
			}
		})
		g.abort()
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	return g.err
}

// serveHTTP serves h on ln until ctx ends, with timeouts that keep slow or
// stuck clients from holding connections.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}
}

func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// metricsMux serves /metrics and /healthz for processes without an API.
// /healthz answers 200 "ok" while healthy returns nil (healthy nil: always),
// else 503 with the error: the liveness probe restarts the process.
func metricsMux(reg *prometheus.Registry, healthy func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(reg))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if healthy != nil {
			if err := healthy(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

func newLogger(format, level string) (*zap.Logger, error) {
	log, err := logging.New(format, level)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return log, nil
}

// startWorker opens the worker's store under dataDir/worker and returns the
// worker (o with Store set) and a closer for the store.
func startWorker(o worker.Options, dataDir string, noSync bool) (*worker.Worker, func() error, error) {
	st, err := state.Open(filepath.Join(dataDir, "worker"), state.Options{NoSync: noSync})
	if err != nil {
		return nil, nil, err
	}
	o.Store = st
	w, err := worker.New(o)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return w, st.Close, nil
}

// lookupLogSample maps a --lookup-log-sample flag (0 off, 1 every key) to
// lookup.Options.LookupLogSample (whose zero value means the default, 1).
func lookupLogSample(p float64) (float64, error) {
	switch {
	case !(p >= 0 && p <= 1):
		return 0, usagef("--lookup-log-sample %v must be between 0 (off) and 1 (every key)", p)
	case p == 0:
		return lookup.NoLookupLog, nil
	}
	return p, nil
}

// startLookupWith opens the view store under dataDir/view (without fsync:
// view writes lost in a crash are read again from the feature log) and returns the lookup service
// (o with Store set) and a closer for the store.
func startLookupWith(o lookup.Options, dataDir string) (*lookup.Service, func() error, error) {
	st, err := state.Open(filepath.Join(dataDir, "view"), state.Options{NoSync: true})
	if err != nil {
		return nil, nil, err
	}
	o.Store = st
	s, err := lookup.New(o)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return s, st.Close, nil
}
