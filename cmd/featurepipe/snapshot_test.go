package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Only the worker creates a missing --snapshots directory; every reader
// fails on one, so that a typo is not a silent "no snapshots".
func TestOpenSnapshotsOnlyTheWriterCreatesTheDirectory(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "snapshtos")
	t.Run("a reader fails on a missing directory and does not create it", func(t *testing.T) {
		st, err := openSnapshots(missing, 0, false)
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
		if _, err := openSnapshots(file, 0, false); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("err = %v, want not a directory", err)
		}
	})
	t.Run("the writer creates it; a reader then opens it", func(t *testing.T) {
		if st, err := openSnapshots(missing, 3, true); err != nil || st == nil {
			t.Fatalf("store %v, err %v", st, err)
		}
		if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
			t.Fatalf("the writer did not create the directory (stat: %v)", err)
		}
		if st, err := openSnapshots(missing, 0, false); err != nil || st == nil {
			t.Fatalf("store %v, err %v", st, err)
		}
	})
	t.Run("no directory means no store", func(t *testing.T) {
		for _, create := range []bool{false, true} {
			if st, err := openSnapshots("", 0, create); st != nil || err != nil {
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
