package e2e

import (
	"context"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// TestBackfillFromSnapshotBeyondRetention: the source topics lose their old
// records (retention, simulated with DeleteRecords up to a snapshot's next
// offsets), yet a backfill from that snapshot plus the records after it
// still equals the brute force over ALL events ever produced, for every
// feature, 30d and lifetime windows included, with the snapshot holding
// pending (future-stamped) events. The same backfill without snapshots is
// wrong, which shows the snapshot was needed.
func TestBackfillFromSnapshotBeyondRetention(t *testing.T) {
	store, _ := newSnapshotStore(t, t.TempDir())
	backfillFromSnapshotBeyondRetention(t, store)
}

func backfillFromSnapshotBeyondRetention(t *testing.T, store *snapshot.Store) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	const users = 60
	rng := rand.New(rand.NewPCG(71, 72))
	p := newProduced()

	// Old events over the last 40 days, and some stamped up to 10 minutes
	// ahead: the worker keeps those as pending in their tiles.
	now := time.Now()
	old := genEvents(rng, 6000, users, 40*24*time.Hour, now)
	for i := range 300 {
		old[i].ts = now.Add(time.Duration(1+rng.IntN(600)) * time.Second).UnixMilli()
	}
	produceEvents(t, ctx, cl, cfg, old, p)
	w := snapshottingWorker(t, k.Brokers, cfg, filepath.Join(dir, "worker"), store)
	snap := snapshotOfAll(t, ctx, w, cl, cfg)
	maxTS := int64(0)
	for _, sp := range snap.Sources {
		maxTS = max(maxTS, sp.MaxEventTime)
	}
	if maxTS <= now.UnixMilli() {
		t.Fatalf("setup: the snapshot holds no future-stamped events (max event time %d)", maxTS)
	}

	// Retention: every record in the snapshot is deleted from the topics.
	adm := kadm.NewClient(cl)
	del := kadm.Offsets{}
	for _, sp := range snap.Sources {
		del.AddOffset(sp.Topic, sp.Partition, sp.NextOffset, -1)
	}
	resp, err := adm.DeleteRecords(ctx, del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}
	for _, s := range cfg.Sources {
		starts, err := adm.ListStartOffsets(ctx, s.Topic)
		if err == nil {
			err = starts.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, sp := range snap.Sources {
			if sp.Topic != s.Topic {
				continue
			}
			if o, _ := starts.Lookup(sp.Topic, sp.Partition); o.Offset != sp.NextOffset {
				t.Fatalf("%s/%d starts at %d after DeleteRecords, want %d", sp.Topic, sp.Partition, o.Offset, sp.NextOffset)
			}
		}
	}

	// Newer events, late ones (up to 40 days old) included.
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 3000, users, 40*24*time.Hour, time.Now()), p)

	// Spine rows from just after the snapshot (and its newest event) on.
	tMin := max(maxTS, snap.CreatedAt.UnixMilli()) + 1
	type row struct {
		key string
		T   int64
	}
	var rows []row
	var spine strings.Builder
	spine.WriteString("user_id,timestamp\n")
	for i := range 600 {
		r := row{key: fmt.Sprintf("user-%03d", i%users), T: tMin + rng.Int64N(int64(3*time.Hour/time.Millisecond))}
		if i == 0 {
			r.T = tMin
		}
		rows = append(rows, r)
		fmt.Fprintf(&spine, "%s,%d\n", r.key, r.T)
	}
	spinePath := filepath.Join(dir, "spine.csv")
	if err := os.WriteFile(spinePath, []byte(spine.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// check runs the backfill and returns the wrong values per feature.
	check := func(name string, snaps *snapshot.Store) (*backfill.Manifest, map[string]int, int) {
		out := filepath.Join(dir, name+".csv")
		m, err := backfill.Run(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Spine: spinePath, Out: out, Snapshots: snaps})
		if err != nil {
			t.Fatalf("backfill %s: %v", name, err)
		}
		tab := readCSV(t, out)
		if len(tab) != len(rows)+1 {
			t.Fatalf("backfill %s: %d lines, want %d", name, len(tab), len(rows)+1)
		}
		wrong := map[string]int{}
		n := 0
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, f := range cfg.Features {
			c := colIndex(t, tab[0], f.Name)
			for i, r := range rows {
				want, ok, _ := bruteForceLocked(p, f, r.key, r.T)
				cell := tab[i+1][c]
				got, err := strconv.ParseFloat(cell, 64)
				n++
				if (cell != "") != ok || (ok && (err != nil || !aggtest.Within(f.Aggregation, got, want))) {
					if wrong[f.ID] == 0 && snaps != nil {
						t.Errorf("%s %s as of %d: got %q, want %v (ok=%v)", r.key, f.ID, r.T, cell, want, ok)
					}
					wrong[f.ID]++
				}
			}
		}
		return m, wrong, n
	}

	m, wrong, n := check("with-snapshot", store)
	if len(wrong) > 0 {
		t.Fatalf("backfill from snapshot %s: wrong values per feature %v (of %d)", snap.ID, wrong, n)
	}
	if len(m.Sources) != len(snap.Sources) {
		t.Fatalf("manifest sources %+v, snapshot sources %+v", m.Sources, snap.Sources)
	}
	for _, r := range m.Sources {
		sp, ok := snap.Source(snapshot.TopicPartition{Topic: r.Topic, Partition: r.Partition})
		if !ok || r.Snapshot != snap.ID || r.From != sp.NextOffset {
			t.Fatalf("manifest source %+v: want snapshot %s from offset %d", r, snap.ID, sp.NextOffset)
		}
	}
	onDisk, err := backfill.ReadManifest(backfill.ManifestPath(filepath.Join(dir, "with-snapshot.csv")))
	if err != nil {
		t.Fatal(err)
	}
	if onDisk.Sources[0].Snapshot != snap.ID {
		t.Fatalf("the manifest file does not name the snapshot: %+v", onDisk.Sources[0])
	}
	t.Logf("backfill from snapshot %s: %d values equal brute force over all %d events, %d records replayed",
		snap.ID, n, p.total, m.Events.Records)
	// As 2 shards, each seeding its partitions from the snapshot: the same rows.
	checkShardedEqual(t, ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Spine: spinePath, Snapshots: store},
		dir, filepath.Join(dir, "with-snapshot.csv"), 2)

	// A spine reaching back before the snapshot cannot use it.
	var ids []string
	for _, f := range cfg.Features {
		ids = append(ids, f.ID)
	}
	early, err := backfill.Compute(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Features: ids, Snapshots: store},
		[]backfill.Point{{Key: "user-001", T: snap.CreatedAt.UnixMilli() - 1}, {Key: "user-002", T: tMin}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range early.Sources {
		if r.Snapshot != "" {
			t.Fatalf("a spine starting before the snapshot was taken used it: %+v", r)
		}
	}

	// Without the snapshot, the deleted records are missing.
	_, wrong, n = check("without-snapshot", nil)
	for _, id := range []string{"txn_count_life@1", "txn_avg_30d@1", "txn_max_30d@1"} {
		if wrong[id] == 0 {
			t.Errorf("without snapshots %s is still right: the test does not show the snapshot is needed (wrong: %v)", id, wrong)
		}
	}
	t.Logf("without snapshots, wrong values per feature: %v (of %d)", wrong, n)
}

// snapshotOfAll waits until the worker has applied every record produced so
// far and returns a snapshot of every source partition taken after that.
func snapshotOfAll(t testing.TB, ctx context.Context, w *worker.Worker, cl *kgo.Client, cfg *config.File) *snapshot.Manifest {
	t.Helper()
	ends := map[snapshot.TopicPartition]int64{}
	for _, src := range cfg.Sources {
		e, err := kafka.EndOffsets(ctx, cl, src.Topic)
		if err != nil {
			t.Fatal(err)
		}
		for p, off := range e {
			ends[snapshot.TopicPartition{Topic: src.Topic, Partition: p}] = off
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		m := takeSnapshot(t, w)
		complete := len(m.Sources) == len(ends)
		for _, sp := range m.Sources {
			complete = complete && sp.NextOffset == ends[sp.TopicPartition()]
		}
		if complete {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot of every partition at its end offset within a minute; last: %+v, ends %v", m.Sources, ends)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readCSV(t testing.TB, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return recs
}

func colIndex(t testing.TB, header []string, name string) int {
	t.Helper()
	for i, h := range header {
		if h == name {
			return i
		}
	}
	t.Fatalf("no column %q in %v", name, header)
	return -1
}
