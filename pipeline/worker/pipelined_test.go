package worker

import (
	"context"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/internal/state"
)

// A pipelined publication records nothing as published (no Pebble offset,
// no partState.published, no published mark to commit) until it is
// settled: by the next publication, which settles it before producing its
// own records, or by a hand-over, even of lost partitions, which publishes
// nothing of them.
func TestPipelinedPublicationIsRecordedOnlyOnceSettled(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st, err := state.Open("state", state.Options{FS: vfs.NewMem(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := metrics.NewWorker(prometheus.NewRegistry())
	p := &publisher{cl: cl, store: st, m: m, topic: "features", now: time.Now, flOffsets: map[int32]int64{}}
	p.produced = p.onProduced
	ps := &partState{tp: topicPartition{"t", 0}, plan: planOf("a@1"), cache: map[string]*entityState{}, dirty: map[dirtyTile]int64{}}
	es := &entityState{key: "u1", series: []aggregations.Series{seriesAt(t0)}}
	change := func(next int64) {
		ps.cache[es.key] = es
		ps.dirty[dirtyTile{es, 0, testWindow.TileStart(t0)}] = 0
		ps.next = next
		p.mu.Lock()
		p.addLocked(ps)
		p.mu.Unlock()
	}
	publishedOffset := func() (int64, bool) {
		off, found, err := st.GetOffset(keys.Published("t", 0))
		if err != nil {
			t.Fatal(err)
		}
		return off, found
	}
	ctx := context.Background()

	change(10)
	if err := p.publishPipelined(ctx, "interval"); err != nil {
		t.Fatal(err)
	}
	if off, found := publishedOffset(); found || ps.published != 0 || ps.mark.Load() != 0 {
		t.Fatalf("in flight, recorded as published: Pebble %d (%v), published %d, mark %d", off, found, ps.published, ps.mark.Load())
	}
	if len(p.pending) != 0 || len(ps.dirty) != 0 {
		t.Fatalf("in flight, still pending: %d partitions, %d dirty tiles", len(p.pending), len(ps.dirty))
	}

	change(20) // the next batch is applied meanwhile
	if err := p.publishPipelined(ctx, "interval"); err != nil {
		t.Fatal(err)
	}
	// Settled by the second publication: recorded through 10, not 20.
	if off, _ := publishedOffset(); off != 10 || ps.published != 10 || ps.mark.Load() != 10 {
		t.Fatalf("after the next publication: Pebble %d, published %d, mark %d; want 10 (the settled one's)", off, ps.published, ps.mark.Load())
	}
	if got := testutil.ToFloat64(m.TilesPublished); got != 1 {
		t.Fatalf("%v records counted as published, want 1", got)
	}

	// A hand-over of lost partitions publishes nothing of them but
	// settles what is in flight.
	change(30)
	if err := p.handOver(ctx, func(*partState) bool { return true }, false); err != nil {
		t.Fatal(err)
	}
	if off, _ := publishedOffset(); off != 20 || ps.published != 20 {
		t.Fatalf("after the hand-over: Pebble %d, published %d; want 20", off, ps.published)
	}
	if got := testutil.ToFloat64(m.TilesPublished); got != 2 {
		t.Fatalf("%v records counted as published, want 2 (the lost partition's changes are not published)", got)
	}
	if p.inflight != nil || len(p.pending) != 0 {
		t.Fatalf("after the hand-over: in flight %v, %d pending", p.inflight != nil, len(p.pending))
	}
}
