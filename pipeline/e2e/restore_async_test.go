package e2e

import (
	"context"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// slowBackend delays every read of a partition's state file (an SST) and
// counts those that completed: a slow object store.
type slowBackend struct {
	snapshot.Backend
	delay    time.Duration
	sstReads atomic.Int64
}

func (b *slowBackend) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if strings.HasSuffix(name, ".sst") {
		select {
		case <-time.After(b.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer b.sstReads.Add(1)
	}
	return b.Backend.Get(ctx, name)
}

// TestSnapshotRestoreRunsOutsideTheRebalance is issue 10 item 4: a worker
// given partitions it has no state for restores them from snapshots in the
// background, paused, not inside franz-go's AdjustFetchOffsetsFn (which the
// group's rebalance waits for). With a snapshot store that takes 3s per
// state file, the new worker's assignment completes before any state file
// has been read; once restored, every value is exact (the restore and the
// live stream together count each event once).
func TestSnapshotRestoreRunsOutsideTheRebalance(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	store, backend := newSnapshotStore(t, dir)
	const users = 100
	rng := rand.New(rand.NewPCG(83, 84))
	p := newProduced()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 6000, users, 40*24*time.Hour, time.Now()), p)

	a, stopA := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, Snapshots: store, SnapshotEvery: time.Hour}, filepath.Join(dir, "a"))
	snapshotOfAll(t, ctx, a, cl, cfg)
	stopA()

	slow := &slowBackend{Backend: backend, delay: 3 * time.Second}
	b := launchWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, Snapshots: snapshot.NewStore(slow, 5)}, filepath.Join(dir, "b"))
	waitFor(t, "worker B is assigned partitions", time.Minute, func() bool { return testutil.ToFloat64(b.w.Metrics().Assigned) > 0 })
	if n := slow.sstReads.Load(); n > 0 {
		t.Fatalf("%d snapshot state files were read before worker B's assignment completed: the restore ran inside the rebalance", n)
	}
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 2000, users, 40*24*time.Hour, time.Now()), p)
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	n := waitExact(t, ls, cfg, p, allKeys(users), time.Minute)
	if slow.sstReads.Load() == 0 {
		t.Fatal("worker B read no snapshot state file: it replayed instead of restoring")
	}
	t.Logf("assignment completed before the slow restores (%d state files read since); %d values equal brute force", slow.sstReads.Load(), n)
}
