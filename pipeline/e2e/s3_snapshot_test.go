package e2e

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/testkit/s3server"
)

// TestS3SnapshotsWorkerProcessToReplica: a worker process started with
// --snapshots s3://bucket/prefix (endpoint and credentials from the
// environment) publishes a snapshot to a real S3 server (versitygw); a
// lookup replica with its own client on the same bucket, as on another
// machine, cold starts from it and answers exactly what brute force over
// the produced events answers, after replaying less of the feature log
// than a replica without snapshots.
func TestS3SnapshotsWorkerProcessToReplica(t *testing.T) {
	srv := s3server.Start(t)
	env := srv.Env()
	for k, v := range env {
		t.Setenv(k, v) // inherited by the worker process
	}
	const location = "s3://featurepipe-e2e/prod/snapshots"
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	const users = 200
	rng := rand.New(rand.NewPCG(61, 62))
	p := newProduced()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 8000, users, 40*24*time.Hour, time.Now()), p)

	start := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	binary(t) // built once per run; not part of any wait below
	phase("featurepipe built")
	metrics := freePort(t)
	startProc(t, "worker", "worker", "--brokers", k.Brokers[0], "--config", cfg.Path,
		"--data", filepath.Join(dir, "worker"), "--metrics", metrics, "--log-level", "warn",
		"--snapshots", location, "--snapshot-every", "1h")
	full, fullSvc := runLookupFrom(t, k.Brokers, cfg, filepath.Join(dir, "full"), nil)
	waitExact(t, full, cfg, p, allKeys(users), 3*time.Minute)
	phase("the worker process has published every event")

	// Ask the worker process for a snapshot (featurepipe snapshot --worker).
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+metrics+"/v1/snapshot", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var m snapshot.Manifest
	err = json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(m.Sources) == 0 {
		t.Fatalf("POST /v1/snapshot: HTTP %d, %v, manifest %+v", resp.StatusCode, err, m)
	}

	phase("snapshot written")

	// Another machine: its own client, from the same environment.
	store := s3SnapshotStore(t, srv, location, false)
	ms, problems, err := store.List(ctx)
	if err != nil || len(problems) != 0 || len(ms) != 1 || ms[0].ID != m.ID {
		t.Fatalf("snapshots in %s: %v, problems %v, %v; want the worker's %s", location, ms, problems, err, m.ID)
	}
	if err := store.Verify(ctx, ms[0]); err != nil {
		t.Fatalf("the published snapshot does not verify: %v", err)
	}

	// Events after the snapshot reach the cold-started replica through the
	// feature log.
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 2000, users, 40*24*time.Hour, time.Now()), p)
	waitExact(t, full, cfg, p, allKeys(users), 3*time.Minute)
	cold, coldSvc := runLookupFrom(t, k.Brokers, cfg, filepath.Join(dir, "cold"), store)
	n := waitExact(t, cold, cfg, p, allKeys(users), 3*time.Minute)
	phase("the cold-started replica is exact")
	replayed, all := testutil.ToFloat64(coldSvc.Metrics().LogRecords), testutil.ToFloat64(fullSvc.Metrics().LogRecords)
	if replayed >= all {
		t.Fatalf("the replica cold started from %s applied %v feature-log records, as many as a full replay (%v): the snapshot was not used", location, replayed, all)
	}
	t.Logf("cold start from %s/%s: %d values equal brute force after applying %v of %v feature-log records", location, m.ID, n, replayed, all)
}

// TestS3BackfillFromSnapshotBeyondRetention is
// TestBackfillFromSnapshotBeyondRetention with the snapshots in a bucket of
// a real S3 server: the backfill reads a snapshot's SSTs from S3.
func TestS3BackfillFromSnapshotBeyondRetention(t *testing.T) {
	srv := s3server.Start(t)
	backfillFromSnapshotBeyondRetention(t, s3SnapshotStore(t, srv, "s3://featurepipe-backfill/snapshots", true))
}

// s3SnapshotStore opens a snapshot store at location on srv, with a client
// of its own, configured from srv's environment.
func s3SnapshotStore(t testing.TB, srv *s3server.Server, location string, create bool) *snapshot.Store {
	t.Helper()
	env := srv.Env()
	o, err := snapshot.S3OptionsFromEnv(location, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	backend, err := snapshot.NewS3Backend(context.Background(), o, create)
	if err != nil {
		t.Fatal(err)
	}
	return snapshot.NewStore(backend, 5)
}
