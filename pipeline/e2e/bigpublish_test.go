package e2e

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/pipeline/worker"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestLargePublicationFitsTheBrokersMessageLimit: a worker that starts on a
// backlog of 30,000 users' events applies them in a few large polls and
// publishes several MB of tiles per feature-log partition at once, with
// random (poorly compressible) values, through a producer that lingers. Every produce batch must fit the
// broker's default message limit (1 MiB, as Apache Kafka's): a larger
// batch is refused with MESSAGE_TOO_LARGE and stops the worker.
func TestLargePublicationFitsTheBrokersMessageLimit(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	const users = 30_000
	rng := rand.New(rand.NewPCG(41, 7))
	p := newProduced()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, users, users, 40*24*time.Hour, time.Now()), p)
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	// A long linger stands for a slow broker (seen under load in CI): the
	// producer fills each batch up to its byte bound before sending it.
	w := launchWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, ExtraOpts: []kgo.Opt{kgo.ProducerLinger(time.Second)}}, filepath.Join(dir, "w"))
	waitFor(t, "the worker applies every event", 3*time.Minute, func() bool {
		select {
		case err := <-w.done:
			t.Fatalf("worker stopped: %v", err)
		default:
		}
		return eventsApplied(w.w) == p.total
	})
	var sample []string // one user in 60: a lookup request takes a bounded number of keys
	for i, key := range allKeys(users) {
		if i%60 == 0 {
			sample = append(sample, key)
		}
	}
	n := waitExact(t, ls, cfg, p, sample, 3*time.Minute)
	select {
	case err := <-w.done:
		t.Fatalf("worker stopped: %v", err)
	default:
	}
	w.stop()
	t.Logf("%d values of %d users equal the brute force; %v feature-log records published", n, len(sample), testutil.ToFloat64(w.w.Metrics().TilesPublished))
}
