package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/featurepipe/featurepipe/internal/broker"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/pipeline/worker"
	"github.com/featurepipe/featurepipe/schemas"
)

// selfHostedSpec is what runSelfHosted starts for the self-hosted modes of
// `featurepipe load` (lookups and --freshness).
type selfHostedSpec struct {
	name string       // the measuring component's name ("load"), in errors and the temporary directory's
	cfg  *config.File // the feature file: the demo one (config.LoadFS(schemas.Files, "demo.yaml")) unless configPath
	// configPath is the feature file cfg was loaded from, given to
	// `featurepipe serve`; "": the embedded demo file, written to the
	// temporary directory.
	configPath string
	// worker is the worker's options; Brokers, Config, Registerer and Log
	// are set by runSelfHosted.
	worker worker.Options
	// lookupLogSample is the lookup service's --lookup-log-sample.
	lookupLogSample string
	// before runs once the broker is up, before the worker starts (nil:
	// nothing), e.g. to produce a history.
	before func(ctx context.Context, brokers []string) error
	// started is printed after "lookup service (pid N) on URL".
	started string
}

// selfHosted is the running pipeline measure is given.
type selfHosted struct {
	brokers []string
	base    string // the lookup service's URL
	worker  *worker.Worker
}

// runSelfHosted starts what `featurepipe dev` runs: an embedded broker and
// one worker (Pebble without fsync) in this process, and the lookup service
// (`featurepipe serve`) in a child process, as in production (its runtime is
// not shared with the broker, the worker or the generator; only the cores
// are). It then runs measure until it returns, and stops everything. A
// lookup service that exits on its own cancels measure's context and ends
// the run with "the lookup service exited: ...".
func runSelfHosted(ctx context.Context, sp selfHostedSpec, stderr io.Writer, measure func(ctx context.Context, s selfHosted) error) (err error) {
	log, err := newLogger("console", "warn")
	if err != nil {
		return err
	}
	defer log.Sync()
	dir, err := os.MkdirTemp("", "featurepipe-"+sp.name+"-")
	if err != nil {
		return fmt.Errorf("temporary state directory: %w", err)
	}
	defer os.RemoveAll(dir)
	b, err := broker.Start(broker.Options{Partitions: int(sp.cfg.Kafka.Partitions)})
	if err != nil {
		return err
	}
	defer b.Close()
	brokers := []string{b.Addr()}
	if sp.before != nil {
		if err := sp.before(ctx, brokers); err != nil {
			return err
		}
	}

	a := &app{}
	defer a.closeInto(&err)
	o := sp.worker
	o.Brokers, o.Config, o.Registerer, o.Log = brokers, sp.cfg, metrics.NewRegistry(), log.Named("worker")
	w, err := openWorker(a, o, dir, true)
	if err != nil {
		return err
	}
	cfgPath := sp.configPath
	if cfgPath == "" {
		cfgDir := filepath.Join(dir, "config")
		if err := os.CopyFS(cfgDir, schemas.Files); err != nil {
			return fmt.Errorf("write the demo feature file: %w", err)
		}
		cfgPath = filepath.Join(cfgDir, "demo.yaml")
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	base := "http://" + addr
	serve, err := startChild(stderr, "serve", "--brokers", b.Addr(), "--config", cfgPath,
		"--data", filepath.Join(dir, "serve"), "--listen", addr, "--log-format", "console", "--log-level", "warn",
		"--lookup-log-sample", sp.lookupLogSample)
	if err != nil {
		return fmt.Errorf("start the lookup service: %w", err)
	}
	defer serve.stop()
	fmt.Fprintf(stderr, "lookup service (pid %d) on %s%s\n", serve.pid, base, sp.started)

	var runErr error // written by the measuring component only; read after a.run
	a.add("worker", w.Run)
	a.add(sp.name, func(ctx context.Context) error {
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { // a lookup service that dies ends the wait or the run
			select {
			case <-serve.done:
				cancel()
			case <-runCtx.Done():
			}
		}()
		runErr = measure(runCtx, selfHosted{brokers: brokers, base: base, worker: w})
		if ctx.Err() == nil { // not stopped from outside (the user, the worker)
			select {
			case <-serve.done: // its death, not the requests it failed, is the error
				runErr = fmt.Errorf("the lookup service exited: %v", serve.err)
			default:
			}
		}
		return nil // ends the group: the pipeline stops
	})
	if err := a.run(ctx); err != nil {
		return err
	}
	return runErr
}
