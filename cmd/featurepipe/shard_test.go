package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/pipeline/backfill"
)

// TestBackfillShardFlag: `backfill --shard i/N` run for every i writes one
// Parquet file per shard into the --out directory; the last one prints
// that it finished last and registers the dataset, whose one manifest
// counts every row. Bad --shard values, or a file name as --out, are usage
// errors (exit 2) naming the flag.
func TestBackfillShardFlag(t *testing.T) {
	f := newProduceFixture(t)
	events := f.input(t, "events.jsonl", txnLine("u-1", 10), txnLine("u-1", 30), txnLine("u-2", 5), txnLine("u-3", 7), txnLine("u-4", 1))
	if code, _, stderr := execCLI("produce", "--brokers", f.brokers, "--config", f.config, "--source", "transactions", "--input", events); code != 0 {
		t.Fatalf("produce: exit %d: %s", code, stderr)
	}
	spine := f.input(t, "spine.csv", "user_id,timestamp", "u-1,2023-11-15T00:00:00Z", "u-2,2023-11-15T00:00:00Z",
		"u-3,2023-11-15T00:00:00Z", "u-4,2023-11-15T00:00:00Z", "u-5,2023-11-15T00:00:00Z")
	out := filepath.Join(f.dir, "train")
	base := []string{"backfill", "--brokers", f.brokers, "--config", f.config, "--spine", spine, "--out", out, "--features", "txn_count_7d"}

	for _, tc := range []struct{ shard, msg string }{
		{"0/0", "the number of shards N must be at least 1"},
		{"3/2", "the shard index must be in 0..1"},
		{"x/y", "want i/N"},
	} {
		code, _, stderr := execCLI(append(base, "--shard", tc.shard)...)
		if code != 2 || !strings.Contains(stderr, "--shard") || !strings.Contains(stderr, tc.msg) {
			t.Errorf("--shard %s: exit %d, stderr:\n%s\nwant exit 2 naming --shard and saying %q", tc.shard, code, stderr, tc.msg)
		}
	}
	fileOut := append(slices.Clone(base), "--shard", "0/2")
	fileOut[slices.Index(fileOut, out)] = out + ".parquet"
	if code, _, stderr := execCLI(fileOut...); code != 2 || !strings.Contains(stderr, "a sharded backfill writes a directory") {
		t.Errorf("--shard with a file --out: exit %d, stderr:\n%s", code, stderr)
	}

	var last string
	for i, shard := range []string{"0/3", "1/3", "2/3"} {
		code, stdout, stderr := execCLI(append(base, "--shard", shard)...)
		if code != 0 {
			t.Fatalf("--shard %s: exit %d: %s", shard, code, stderr)
		}
		if i < 2 && !strings.Contains(stdout, "not every shard has finished") {
			t.Errorf("--shard %s printed:\n%s", shard, stdout)
		}
		last = stdout
	}
	if !strings.Contains(last, "shard 2/3 finished last: the dataset is 3 Parquet files in "+out) || !strings.Contains(last, "registered in the catalog as dataset train@1") {
		t.Errorf("the last shard printed:\n%s", last)
	}
	for i := 0; i < 3; i++ {
		if _, err := os.Stat(filepath.Join(out, backfill.Shard{Index: i, Count: 3}.PartFile())); err != nil {
			t.Error(err)
		}
	}
	m, err := backfill.ReadManifest(backfill.ManifestPath(out))
	if err != nil {
		t.Fatal(err)
	}
	if m.Output.Rows != 5 || len(m.Shards) != 3 || m.Dataset != "train@1" {
		t.Errorf("manifest: %d rows, %d shards, dataset %q; want 5, 3, train@1", m.Output.Rows, len(m.Shards), m.Dataset)
	}

	if code, _, stderr := execCLI(append(base, "--merge")...); code != 1 || !strings.Contains(stderr, "already has its manifest") {
		t.Errorf("--merge of a finished dataset: exit %d: %s", code, stderr)
	}

	// Recovery: the shard that claimed the merge died before writing the
	// manifest; --merge finishes the dataset once every shard is done.
	out2 := filepath.Join(f.dir, "train2")
	base2 := slices.Clone(base)
	base2[slices.Index(base2, out)] = out2
	for _, shard := range []string{"0/3", "2/3"} {
		if code, _, stderr := execCLI(append(base2, "--shard", shard)...); code != 0 {
			t.Fatalf("--shard %s: exit %d: %s", shard, code, stderr)
		}
	}
	if code, _, stderr := execCLI(append(base2, "--merge")...); code != 1 || !strings.Contains(stderr, "shards 1 of 3 have not finished") {
		t.Errorf("--merge with shard 1 missing: exit %d: %s", code, stderr)
	}
	if err := os.WriteFile(filepath.Join(out2, "_shards", "merge.claim"), []byte("shard 1/3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := execCLI(append(base2, "--shard", "1/3")...); code != 0 || !strings.Contains(stdout, "not every shard has finished") {
		t.Fatalf("--shard 1/3 with a claim left behind: exit %d: %s%s", code, stdout, stderr)
	}
	code, stdout, stderr := execCLI(append(base2, "--merge")...)
	if code != 0 || !strings.Contains(stdout, "3 shards merged: 5 rows in "+out2) || !strings.Contains(stdout, "registered in the catalog as dataset train2@1") {
		t.Fatalf("--merge: exit %d: %s%s", code, stdout, stderr)
	}
	if code, _, stderr := execCLI(append(base2, "--merge", "--shard", "0/3")...); code != 2 || !strings.Contains(stderr, "without --shard") {
		t.Errorf("--merge --shard: exit %d: %s", code, stderr)
	}
}
