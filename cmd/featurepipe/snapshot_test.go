package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/testkit/s3server"
)

// Only the worker creates a missing --snapshots directory; every reader
// fails on one, so that a typo is not a silent "no snapshots".
func TestOpenSnapshotsOnlyTheWriterCreatesTheDirectory(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "snapshtos")
	t.Run("a reader fails on a missing directory and does not create it", func(t *testing.T) {
		st, err := openSnapshots(context.Background(), missing, 0, false)
		if err == nil || st != nil {
			t.Fatalf("store %v, err %v; want an error", st, err)
		}
		if !errors.As(err, new(*usageError)) || !strings.Contains(err.Error(), "--snapshots "+missing+": no such directory") {
			t.Fatalf("err = %v, want a usage error naming the directory", err)
		}
		if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the missing directory was created (stat: %v)", err)
		}
	})
	t.Run("a reader fails on a file", func(t *testing.T) {
		file := filepath.Join(dir, "file")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := openSnapshots(context.Background(), file, 0, false); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("err = %v, want not a directory", err)
		}
	})
	t.Run("the writer creates it; a reader then opens it", func(t *testing.T) {
		if st, err := openSnapshots(context.Background(), missing, 3, true); err != nil || st == nil {
			t.Fatalf("store %v, err %v", st, err)
		}
		if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
			t.Fatalf("the writer did not create the directory (stat: %v)", err)
		}
		if st, err := openSnapshots(context.Background(), missing, 0, false); err != nil || st == nil {
			t.Fatalf("store %v, err %v", st, err)
		}
	})
	t.Run("no directory means no store", func(t *testing.T) {
		for _, create := range []bool{false, true} {
			if st, err := openSnapshots(context.Background(), "", 0, create); st != nil || err != nil {
				t.Fatalf("create=%v: store %v, err %v; want none", create, st, err)
			}
		}
	})
}

func TestSnapshotListOfAMissingDirectoryIsAUsageError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "snapshtos")
	code, stdout, stderr := execCLI("snapshot", "--snapshots", missing, "--list")
	if code != 2 || !strings.Contains(stderr, "--snapshots "+missing+": no such directory") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant 2 and no such directory", code, stdout, stderr)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("snapshot --list created the directory (stat: %v)", err)
	}
}

// --snapshots s3://bucket/prefix opens a bucket on the S3 server named by
// the environment: readers fail on a missing bucket (naming it), the
// worker creates it, and snapshot --list lists what a worker wrote there.
func TestOpenSnapshotsOnS3(t *testing.T) {
	srv := s3server.Start(t)
	for k, v := range srv.Env() {
		t.Setenv(k, v)
	}
	ctx := context.Background()
	const loc = "s3://fp-snapshots/team-a"
	t.Run("a reader fails on a missing bucket", func(t *testing.T) {
		st, err := openSnapshots(ctx, loc, 0, false)
		if st != nil || err == nil || !strings.Contains(err.Error(), "fp-snapshots") || !strings.Contains(err.Error(), "a worker with --snapshots creates it") {
			t.Fatalf("store %v, err %v; want an error naming the bucket", st, err)
		}
		code, _, stderr := execCLI("snapshot", "--snapshots", loc, "--list")
		if code == 0 || !strings.Contains(stderr, "fp-snapshots") {
			t.Fatalf("snapshot --list on a missing bucket: exit %d, stderr:\n%s", code, stderr)
		}
	})
	t.Run("the writer creates it; snapshot --list shows its snapshots", func(t *testing.T) {
		w, err := openSnapshots(ctx, loc, 3, true)
		if err != nil || w == nil {
			t.Fatalf("store %v, err %v", w, err)
		}
		m, err := w.Write(ctx, snapshot.Manifest{Worker: "worker-7"}, []snapshot.PartitionData{{
			Topic: "transactions", Partition: 2, NextOffset: 1234, MaxEventTime: 1,
			Iter: func(yield func(k, v []byte) bool) error { yield([]byte("k"), []byte("v")); return nil },
		}})
		if err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := execCLI("snapshot", "--snapshots", loc, "--list")
		if code != 0 || !strings.Contains(stdout, m.ID) || !strings.Contains(stdout, "by worker-7") || !strings.Contains(stdout, "transactions/2@1234") {
			t.Fatalf("snapshot --list: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
		}
		// Another prefix of the same bucket is another, empty, store.
		code, stdout, _ = execCLI("snapshot", "--snapshots", "s3://fp-snapshots/team-b", "--list")
		if code != 0 || strings.TrimSpace(stdout) != "" {
			t.Fatalf("another prefix: exit %d, stdout %q", code, stdout)
		}
	})
	t.Run("bad locations are usage errors", func(t *testing.T) {
		for loc, want := range map[string]string{
			"s3://Not_A_Bucket/x": "Not_A_Bucket",
			"gs://bucket/x":       "want a directory or s3://bucket/prefix",
		} {
			_, err := openSnapshots(ctx, loc, 0, false)
			if !errors.As(err, new(*usageError)) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: err = %v, want a usage error mentioning %q", loc, err, want)
			}
		}
	})
}
