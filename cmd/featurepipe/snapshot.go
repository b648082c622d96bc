package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// snapshotHandler serves POST /v1/snapshot on a worker's metrics listener:
// it asks the worker for a snapshot and answers its manifest once written.
func snapshotHandler(w *worker.Worker) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		before := w.LastSnapshot()
		w.RequestSnapshot()
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		defer cancel()
		for {
			if m := w.LastSnapshot(); m != nil && m != before {
				rw.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(rw).Encode(m)
				return
			}
			select {
			case <-ctx.Done():
				http.Error(rw, `{"error":{"code":"timeout","message":"no snapshot was written within 2 minutes; see the worker's log"}}`, http.StatusGatewayTimeout)
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func runSnapshot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("snapshot", "--worker http://HOST:PORT[,...] | --snapshots DIR|s3://bucket/prefix --list", stderr)
	workers := fs.String("worker", "", "comma-separated metrics addresses of the workers to snapshot now (their --metrics)")
	dir := fs.String("snapshots", "", "snapshot directory or s3://bucket/prefix, for --list")
	list := fs.Bool("list", false, "list the snapshots in --snapshots, newest first, and any that are corrupt")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *list {
		if *dir == "" {
			return usagef("--list needs --snapshots DIR")
		}
		snaps, err := openSnapshots(ctx, *dir, 0, false)
		if err != nil {
			return err
		}
		ms, problems, err := snaps.List(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			var parts []string
			for _, s := range m.Sources {
				parts = append(parts, fmt.Sprintf("%s/%d@%d", s.Topic, s.Partition, s.NextOffset))
			}
			fmt.Fprintf(stdout, "%s  %s  by %s  %d features  %s\n", m.ID, m.CreatedAt.Format(time.RFC3339), m.Worker, len(m.Features), strings.Join(parts, " "))
		}
		for _, p := range problems {
			fmt.Fprintf(stdout, "corrupt, skipped: %v\n", p)
		}
		return nil
	}
	addrs := splitList(*workers)
	if len(addrs) == 0 {
		return usagef("--worker is required (or --snapshots DIR|s3://bucket/prefix --list)")
	}
	for _, addr := range addrs {
		if !strings.Contains(addr, "://") {
			addr = "http://" + addr
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(addr, "/")+"/v1/snapshot", nil)
		if err != nil {
			return usagef("--worker %s: %v", addr, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("ask %s for a snapshot: %w", addr, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d: %s", addr, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		var m snapshot.Manifest
		if err := json.Unmarshal(body, &m); err != nil {
			return fmt.Errorf("%s: unreadable answer: %w", addr, err)
		}
		fmt.Fprintf(stdout, "%s: snapshot %s written (%d partitions)\n", addr, m.ID, len(m.Sources))
	}
	return nil
}

// openSnapshots opens the snapshot store at loc ("" means none): a
// directory, or "s3://bucket/prefix" with the endpoint, region and
// credentials from the environment (see snapshot.S3OptionsFromEnv), keeping
// retain snapshots per partition (0: the store's default). Only a writer
// (the worker) passes create, which makes a missing directory or bucket.
// Readers (serve, backfill, features, snapshot --list) fail when it does
// not exist, so that a mistyped --snapshots is an error, not a silent "no
// snapshots" (and no stray directory or bucket).
func openSnapshots(ctx context.Context, loc string, retain int, create bool) (*snapshot.Store, error) {
	if loc == "" {
		return nil, nil
	}
	if strings.HasPrefix(loc, snapshot.S3Scheme) {
		o, err := snapshot.S3OptionsFromEnv(loc, os.Getenv)
		if err != nil {
			return nil, usagef("--snapshots %s: %v", loc, err)
		}
		// The bucket check retries a dead endpoint with back-off: bound it.
		cctx, cancel := context.WithTimeout(ctx, s3ConnectTimeout)
		defer cancel()
		b, err := snapshot.NewS3Backend(cctx, o, create)
		if err != nil {
			return nil, fmt.Errorf("--snapshots %s: %w", loc, err)
		}
		return snapshot.NewStore(b, retain), nil
	}
	if strings.Contains(loc, "://") {
		return nil, usagef("--snapshots %s: want a directory or s3://bucket/prefix", loc)
	}
	if !create {
		st, err := os.Stat(loc)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, usagef("--snapshots %s: no such directory (a worker with --snapshots creates it)", loc)
		case err != nil:
			return nil, fmt.Errorf("snapshot directory: %w", err)
		case !st.IsDir():
			return nil, usagef("--snapshots %s: not a directory", loc)
		}
	}
	b, err := snapshot.NewDirBackend(loc)
	if err != nil {
		return nil, fmt.Errorf("snapshot directory: %w", err)
	}
	return snapshot.NewStore(b, retain), nil
}

// s3ConnectTimeout bounds openSnapshots' check of an S3 bucket.
const s3ConnectTimeout = 30 * time.Second
