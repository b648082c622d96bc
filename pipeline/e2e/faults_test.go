package e2e

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// TestFailingDiskStopsTheWorkerWithoutLoss runs a worker on a Pebble store
// whose writes start failing mid-ingestion (pebble's errorfs). The worker
// must stop with an error instead of advancing offsets, and a worker
// restarted on what had reached the disk (a crash clone of the filesystem:
// only synced data survives) must end exact.
func TestFailingDiskStopsTheWorkerWithoutLoss(t *testing.T) {
	k := startKafka(t)
	cfg := writeConfig(t, featureFile)
	ctx := context.Background()
	cl := newClient(t, k.brokers)
	if err := kafka.EnsureTopics(ctx, cl, cfg); err != nil {
		t.Fatal(err)
	}
	ls, _ := runLookup(t, k.brokers, cfg, filepath.Join(t.TempDir(), "view"))
	const users = 200
	rng := rand.New(rand.NewPCG(21, 22))
	p := newProduced()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 5000, users, 40*24*time.Hour, time.Now()), p)

	disk := vfs.NewCrashableMem()
	var failing atomic.Bool
	var injected atomic.Int64
	fs := errorfs.Wrap(disk, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			injected.Add(1)
			return errorfs.ErrInjected
		}
		return nil
	}))
	st, err := state.Open("worker", state.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Options{Brokers: k.brokers, Config: cfg, Store: st,
		ExtraOpts: []kgo.Opt{kgo.SessionTimeout(6 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(ctx) }()
	waitTotal(t, ls.url, allKeys(users), transactionsProduced(p), time.Minute)

	// The disk fails; more events arrive.
	failing.Store(true)
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 5000, users, 40*24*time.Hour, time.Now()), p)
	select {
	case err := <-runErr:
		if err == nil || !errors.Is(err, state.ErrFailed) || !strings.Contains(err.Error(), "injected error") {
			t.Fatalf("worker stopped with %v, want the injected disk error", err)
		}
		t.Logf("worker reported: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("worker kept running on a failing disk")
	}
	if injected.Load() == 0 {
		t.Fatal("no write was failed: the test did not test anything")
	}
	// Restart on a healthy disk holding exactly what was synced.
	healthy := disk.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	st2, err := state.Open("worker", state.Options{FS: healthy})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	w2, err := worker.New(worker.Options{Brokers: k.brokers, Config: cfg, Store: st2,
		ExtraOpts: []kgo.Opt{kgo.SessionTimeout(6 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w2.Run(ctx2) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	n := waitExact(t, ls, cfg, p, allKeys(users), 2*time.Minute)
	t.Logf("after %d injected write errors and a restart on a healthy disk, %d values equal brute force", injected.Load(), n)
}
