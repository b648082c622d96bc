package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/featurepipe/featurepipe/internal/httpserve"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/featurepipe/featurepipe/internal/logging"
	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// app is one process's wiring, in two phases. Build: everything that can
// fail at start-up is done first (stores opened, listeners bound, clients
// created), each registering its closer with onClose; nothing runs yet, so
// a failure (a taken port) leaves nothing to stop, only what was built to
// close. Run: every component added with add starts at once; when the first
// returns (or ctx ends) the others are canceled, and Run waits for all of
// them (errgroup). Close then closes what was built in reverse order, after
// every component has stopped, so a store is never closed under a running
// component (Prometheus' run group: cmd/prometheus/main.go).
//
// The usual shape is
//
//	a := &app{}
//	defer a.closeInto(&err)
//	... build, a.onClose(...), a.add(...) ...
//	return a.run(ctx)
type app struct {
	components []component
	closers    []closer
}

type component struct {
	name string
	run  func(ctx context.Context) error
}

type closer struct {
	name  string
	close func() error
}

// add registers a component to start in run.
func (a *app) add(name string, run func(ctx context.Context) error) {
	a.components = append(a.components, component{name, run})
}

// onClose registers what close releases, after everything added before it
// (reverse order).
func (a *app) onClose(name string, close func() error) {
	a.closers = append(a.closers, closer{name, close})
}

// run starts every component and returns when all have stopped: the first
// error of a component (wrapped with its name; context.Canceled is a clean
// stop), or nil.
func (a *app) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	ctx, cancel := context.WithCancel(gctx)
	defer cancel()
	for _, c := range a.components {
		g.Go(func() error {
			defer cancel() // the first to return stops the rest
			if err := c.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// close closes what was built, in reverse order, each once, and returns
// their errors joined. Call it after run has returned (or instead of run
// when building failed).
func (a *app) close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		c := a.closers[i]
		if err := c.close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close %s: %w", c.name, err))
		}
	}
	a.closers = nil
	return errors.Join(errs...)
}

// closeInto is close for a defer: its error joins *err.
func (a *app) closeInto(err *error) { *err = errors.Join(*err, a.close()) }

// serveHTTP serves h on ln until ctx ends, through fasthttp's server
// (internal/httpserve: buffered responses, the handler on the connection's
// goroutine), with timeouts that keep slow or stuck clients from holding
// connections; errors of the server itself go to log.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *zap.Logger) error {
	return httpserve.Serve(ctx, ln, h, httpserve.Options{Log: log})
}

// serveNetHTTP serves h on ln until ctx ends with net/http's server and the
// same bounds as serveHTTP. Only `load --baseline` uses it: issue 18 defines
// the lookups' floor as a net/http handler.
func serveNetHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
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
		sctx, cancel := context.WithTimeout(context.Background(), httpserve.ShutdownTimeout)
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

// openWorker opens the worker's store under dataDir/worker (closed by a)
// and returns the worker (o with Store set), not yet running.
func openWorker(a *app, o worker.Options, dataDir string, noSync bool) (*worker.Worker, error) {
	if o.Store == nil {
		st, err := openWorkerStore(a, o, dataDir, noSync, 0)
		if err != nil {
			return nil, err
		}
		o.Store = st
	}
	return worker.New(o)
}

// openWorkerStore opens the worker's store under dataDir/worker (closed by
// a), for a caller that needs it before the worker (the statistics' hours),
// with a block cache of cacheBytes (0: state.Options' default).
func openWorkerStore(a *app, o worker.Options, dataDir string, noSync bool, cacheBytes int64) (*state.Store, error) {
	st, err := state.Open(filepath.Join(dataDir, "worker"), state.Options{NoSync: noSync, Log: o.Log, Registerer: o.Registerer, Name: "worker", CacheBytes: cacheBytes})
	if err != nil {
		return nil, err
	}
	a.onClose("worker store", st.Close)
	return st, nil
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

// openLookup opens the view store under dataDir/view (without fsync: view
// writes lost in a crash are read again from the feature log; closed by a)
// with a block cache of cacheBytes (0: state.Options' default) and returns the
// lookup service (o with Store set), not yet running.
func openLookup(a *app, o lookup.Options, dataDir string, cacheBytes int64) (*lookup.Service, error) {
	st, err := lookup.OpenStore(filepath.Join(dataDir, "view"), state.Options{NoSync: true, Log: o.Log, Registerer: o.Registerer, Name: "view", CacheBytes: cacheBytes})
	if err != nil {
		return nil, err
	}
	a.onClose("view store", st.Close)
	o.Store = st
	return lookup.New(o)
}
