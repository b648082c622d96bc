package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// TestMain lets the test binary double as a worker process whose disk can
// be made to fail (see runFaultyWorker).
func TestMain(m *testing.M) {
	if os.Getenv("FEATUREPIPE_FAULTY_WORKER") != "" {
		os.Exit(runFaultyWorker())
	}
	os.Exit(m.Run())
}

// runFaultyWorker runs a worker whose Pebble store sits on pebble's errorfs
// over the real disk: once the file named by FAIL_FILE exists, every write
// fails. Pebble treats a failed WAL write as fatal: the worker either
// returns state.ErrFailed (exit 3) or Pebble panics (exit 2). Either way it
// must not advance offsets past what reached the disk.
//
// (The test binary runs it rather than the featurepipe binary so that no
// fault injection ships in the product.)
func runFaultyWorker() int {
	failFile := os.Getenv("FAIL_FILE")
	var failing atomic.Bool
	go func() {
		for {
			if _, err := os.Stat(failFile); err == nil {
				failing.Store(true)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return errorfs.ErrInjected
		}
		return nil
	}))
	cfg, err := config.Load(os.Getenv("CONFIG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	st, err := state.Open(os.Getenv("DATA"), state.Options{FS: fs})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w, err := worker.New(worker.Options{Brokers: []string{os.Getenv("BROKERS")}, Config: cfg, Store: st,
		InstanceID: "faulty", SessionTimeout: 6 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	err = w.Run(context.Background())
	fmt.Fprintf(os.Stderr, "worker stopped: %v (failed store: %v)\n", err, errors.Is(err, state.ErrFailed))
	return 3
}

// TestFailingDiskStopsTheWorkerWithoutLoss makes a worker's disk fail
// mid-ingestion. The worker must stop by itself, reporting the disk error,
// instead of advancing offsets; restarted on the same directory with a
// healthy disk, it must resume without loss.
func TestFailingDiskStopsTheWorkerWithoutLoss(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	const users = 200
	rng := rand.New(rand.NewPCG(21, 22))
	p := newProduced()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 5000, users, 40*24*time.Hour, time.Now()), p)

	// featurepipe worker keeps its store in --data/worker: use that layout.
	data := filepath.Join(dir, "w", "worker")
	failFile := filepath.Join(dir, "fail-now")
	faulty := exec.Command(os.Args[0], "-test.run=^$")
	out := &strings.Builder{}
	faulty.Stdout, faulty.Stderr = out, out
	faulty.Env = append(os.Environ(), "FEATUREPIPE_FAULTY_WORKER=1", "FAIL_FILE="+failFile,
		"CONFIG="+cfg.Path, "DATA="+data, "BROKERS="+k.Brokers[0])
	if err := faulty.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- faulty.Wait() }()
	waitTotal(t, ls.url, allKeys(users), transactionsProduced(p), time.Minute)

	// The disk fails; more events arrive.
	if err := os.WriteFile(failFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 5000, users, 40*24*time.Hour, time.Now()), p)
	select {
	case err := <-exited:
		// Either our store reports the fatal commit error, or Pebble itself
		// panics (it does when rotating a WAL it cannot close).
		reported := strings.Contains(out.String(), "injected error") ||
			(strings.Contains(out.String(), "panic") && strings.Contains(out.String(), "cockroachdb/pebble"))
		if err == nil || !reported {
			t.Fatalf("worker exited with %v and did not report the disk error:\n%s", err, out)
		}
		t.Logf("worker on the failing disk stopped (%v): %s", err, firstLine(out.String()))
	case <-time.After(time.Minute):
		_ = faulty.Process.Kill()
		t.Fatal("worker kept running on a failing disk")
	}

	// Restart on a healthy disk (same directory, no fault injection).
	startProc(t, "worker", "worker", "--instance-id", "faulty", "--session-timeout", "6s", "--brokers", k.Brokers[0], "--config", cfg.Path,
		"--data", filepath.Dir(data), "--metrics", "", "--log-level", "warn")
	n := waitExact(t, ls, cfg, p, allKeys(users), 2*time.Minute)
	t.Logf("restarted on a healthy disk: %d values equal brute force", n)
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "injected error") || strings.Contains(l, "pebble.(*DB)") {
			return strings.TrimSpace(l)
		}
	}
	return s
}
