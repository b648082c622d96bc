package backfill

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Shard
		ok   bool
	}{
		{"", Shard{}, true},
		{"0/1", Shard{0, 1}, true},
		{"2/3", Shard{2, 3}, true},
		{"0/0", Shard{}, false},
		{"3/2", Shard{}, false},
		{"2/2", Shard{}, false},
		{"-1/2", Shard{}, false},
		{"x/y", Shard{}, false},
		{"1", Shard{}, false},
		{"1/2/3", Shard{}, false},
	} {
		got, err := ParseShard(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseShard(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("ParseShard(%q): %v does not wrap ErrInvalidOptions", tc.in, err)
		}
	}
}

// shardStatuses returns the status of every cell by spine file row, as
// computed by o (one shard, or every row when o is not sharded).
func shardStatuses(t *testing.T, o Options) map[int][]cellStatus {
	t.Helper()
	if err := o.validate(true); err != nil {
		t.Fatal(err)
	}
	b, err := o.build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][]cellStatus{}
	nf := len(b.ev.res.columns)
	for i, src := range b.sp.good {
		out[src] = b.ev.res.status[i*nf : (i+1)*nf]
	}
	return out
}

// TestShardedRunMatchesSingleProcess runs the backfill once as one process
// and as N shards (all at once, so they race to merge) over the same topics
// and spine: the union of the shards' rows must equal the single run's
// exactly (every cell, nulls, and every cell's status), each shard must hold
// only the rows whose key's canonical partition it owns, and the dataset
// must be one Parquet file per shard plus one manifest matching the single
// run's (rows, offsets replayed, events, statistics), registered once.
func TestShardedRunMatchesSingleProcess(t *testing.T) {
	s := newScenario(t, 3)
	refs := []string{"txn_avg_30d@1", "txn_avg_30d", "txn_sum_1d", "txn_count_7d", "txn_min_7d", "txn_max_30d", "txn_last", "txn_count_life", "login_count_1h",
		"txn_var_1d", "txn_stddev_7d", "txn_var_samp_30d", "txn_stddev_samp_life", "txn_first", "txn_distinct_30d", "txn_p95_7d"}
	dir := t.TempDir()
	spine := filepath.Join(dir, "spine.parquet")
	writeSpine(t, spine, s.rows)
	base := Options{Brokers: s.brokers, Config: s.cfg, Spine: spine, Features: refs, Mode: ModeArrival}

	single := base
	single.Out = filepath.Join(dir, "single.parquet")
	m1, err := Run(context.Background(), single)
	if err != nil {
		t.Fatal(err)
	}
	want := readTable(t, single.Out)
	labelCol := want.col(t, "label")
	byLabel := map[string]int{}
	for i, row := range want.cells {
		byLabel[row[labelCol]] = i
	}
	wantStatus := shardStatuses(t, single)

	for _, n := range []int{3, 2} {
		t.Run(fmt.Sprintf("%d shards", n), func(t *testing.T) {
			out := filepath.Join(dir, fmt.Sprintf("sharded-%d", n))
			mans := make([]*Manifest, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					o := base
					o.Out, o.Shard = out, Shard{Index: i, Count: n}
					mans[i], errs[i] = Run(context.Background(), o)
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("shard %d: %v", i, err)
				}
			}

			// One Parquet file per shard, one manifest.
			var parquets []string
			entries, err := os.ReadDir(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if filepath.Ext(e.Name()) == ".parquet" {
					parquets = append(parquets, e.Name())
				}
			}
			var wantFiles []string
			for i := 0; i < n; i++ {
				wantFiles = append(wantFiles, Shard{i, n}.PartFile())
			}
			if !slices.Equal(parquets, wantFiles) {
				t.Fatalf("dataset files %v, want %v", parquets, wantFiles)
			}
			var ds *Manifest
			for i, m := range mans {
				switch {
				case len(m.Shards) > 0 && ds == nil:
					ds = m
				case len(m.Shards) > 0:
					t.Fatalf("shard %d merged too: the dataset must be merged and registered once", i)
				case m.Shard == nil || *m.Shard != (Shard{i, n}) || m.Dataset != "":
					t.Fatalf("shard %d returned %+v, want its shard manifest", i, m.Shard)
				}
			}
			if ds == nil {
				t.Fatal("no shard merged the dataset manifest")
			}
			onDisk, err := ReadManifest(ManifestPath(out))
			if err != nil {
				t.Fatal(err)
			}
			if onDisk.Dataset != ds.Dataset || ds.Dataset != fmt.Sprintf("sharded-%d@1", n) {
				t.Fatalf("dataset %q (on disk %q), want sharded-%d@1", ds.Dataset, onDisk.Dataset, n)
			}

			// The union of the shards' rows is the single run's, cell by cell.
			part := newPartitioner()
			seen := map[string]bool{}
			for i, f := range parquets {
				tb := readTable(t, filepath.Join(out, f))
				if !slices.Equal(tb.columns, want.columns) {
					t.Fatalf("shard %d columns %v, want %v", i, tb.columns, want.columns)
				}
				if len(tb.cells) == 0 {
					t.Fatalf("shard %d has no rows: the scenario does not split", i)
				}
				keyCol := tb.col(t, "user_id")
				for r, row := range tb.cells {
					if p := part.partition(row[keyCol], 3); p%n != i {
						t.Fatalf("shard %d has key %s of partition %d", i, row[keyCol], p)
					}
					label := row[labelCol]
					w, ok := byLabel[label]
					if !ok || seen[label] {
						t.Fatalf("shard %d row %v: not in the single run, or in two shards", i, row)
					}
					seen[label] = true
					if !slices.Equal(row, want.cells[w]) || !slices.Equal(tb.null[r], want.null[w]) {
						t.Fatalf("shard %d row %v (nulls %v)\nsingle run %v (nulls %v)", i, row, tb.null[r], want.cells[w], want.null[w])
					}
				}
			}
			if len(seen) != len(want.cells) {
				t.Fatalf("the shards hold %d rows, the single run %d", len(seen), len(want.cells))
			}

			// Statuses, by spine row.
			got := map[int][]cellStatus{}
			for i := 0; i < n; i++ {
				o := base
				o.Out, o.Shard = filepath.Join(dir, fmt.Sprintf("status-%d-%d", n, i)), Shard{Index: i, Count: n}
				for r, st := range shardStatuses(t, o) {
					got[r] = st
				}
			}
			if len(got) != len(wantStatus) {
				t.Fatalf("statuses of %d rows, want %d", len(got), len(wantStatus))
			}
			for r, st := range wantStatus {
				if !slices.Equal(got[r], st) {
					t.Fatalf("spine row %d: statuses %v, single run %v", r, got[r], st)
				}
			}

			// The manifest adds up to the single run's.
			if ds.Output.Rows != m1.Output.Rows || ds.Output.Path != out || len(ds.Shards) != n {
				t.Fatalf("dataset output %+v with %d shards, want %d rows in %s", ds.Output, len(ds.Shards), m1.Output.Rows, out)
			}
			if !slices.Equal(ds.Sources, m1.Sources) {
				t.Fatalf("sources %v\nsingle run %v", ds.Sources, m1.Sources)
			}
			if ds.Events.Records != m1.Events.Records || ds.Events.Kept != m1.Events.Kept || fmt.Sprint(ds.Events.Rejected) != fmt.Sprint(m1.Events.Rejected) {
				t.Fatalf("events %+v, single run %+v", ds.Events, m1.Events)
			}
			if *ds.TimeRange != *m1.TimeRange || ds.Spine.SHA256 != m1.Spine.SHA256 {
				t.Fatalf("time range %+v spine %s, single run %+v %s", ds.TimeRange, ds.Spine.SHA256, m1.TimeRange, m1.Spine.SHA256)
			}
			for j, f := range ds.Features {
				a, b := f.Statistics.Summary(), m1.Features[j].Statistics.Summary()
				if f.Column != m1.Features[j].Column || f.Statistics.Count() != m1.Features[j].Statistics.Count() ||
					f.Statistics.NullRate() != m1.Features[j].Statistics.NullRate() || !near(a.Mean, b.Mean) || !near(a.Min, b.Min) || !near(a.Max, b.Max) {
					t.Fatalf("feature %s statistics %+v, single run %+v", f.Column, a, b)
				}
			}

			// A completed dataset directory is not reused.
			o := base
			o.Out, o.Shard = out, Shard{Index: 0, Count: n}
			if _, err := Run(context.Background(), o); err == nil {
				t.Fatal("a shard wrote into a completed dataset")
			}
		})
	}
}

// near tells whether optional statistics a and b are both absent or equal
// within float rounding (a merge sums in another order).
func near(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b || math.Abs(*a-*b) <= 1e-9*max(math.Abs(*a), math.Abs(*b))
}

// TestShardFailsOnOffCanonicalRecords: a record of a spine entity in
// another partition than its key's canonical one is read by a shard that
// does not own the entity; that shard fails (ErrNotCanonical) rather than
// let the owner compute without it, while the single-process run is exact.
func TestShardFailsOnOffCanonicalRecords(t *testing.T) {
	brokers, cfg, cl := setup(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := context.Background()
	now := time.Now().Add(-time.Hour).UnixMilli()
	part := newPartitioner()
	w := newWorld()
	var rows []spineRow
	var off string // the key produced off its canonical partition
	for i := 0; i < 6; i++ {
		key := "u" + strconv.Itoa(i)
		rows = append(rows, spineRow{key: key, T: now, label: i})
		evs := []genEvent{{source: "transactions", key: key, ts: now - aggregations.Hour, arrival: now - aggregations.Hour, amount: 1}}
		produceAll(t, ctx, cl, cfg, evs, func(genEvent) bool { return true }, w) // manual partitioner: partition 0
		if part.partition(key, 3) != 0 && off == "" {
			off = key
		}
	}
	if off == "" {
		t.Fatal("every key is canonical in partition 0: pick other keys")
	}
	dir := t.TempDir()
	spine := filepath.Join(dir, "spine.csv")
	writeSpine(t, spine, rows)
	base := Options{Brokers: brokers, Config: cfg, Spine: spine, Features: []string{"txn_sum_1d"}}
	single := base
	single.Out = filepath.Join(dir, "single.csv")
	if _, err := Run(ctx, single); err != nil {
		t.Fatalf("single process: %v", err)
	}
	o := base
	o.Out, o.Shard = filepath.Join(dir, "sharded"), Shard{Index: 0, Count: 3} // reads partition 0
	_, err := Run(ctx, o)
	if !errors.Is(err, ErrNotCanonical) {
		t.Fatalf("shard 0/3 read %s's record in partition 0 (canonical %d): err %v, want ErrNotCanonical", off, part.partition(off, 3), err)
	}
	t.Log(err)
	if _, err := os.Stat(filepath.Join(o.Out, o.Shard.PartFile())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the failed shard left its file: %v", err)
	}
}

// rekeyShardFile: a merchant entity fed from transactions keyed by user, so
// its events are spread over every partition by the user key.
var rekeyShardFile = testkit.KafkaSection(3) + `  repartition_prefix: repartition-{{ID}}.
entities:
  - {name: user, key: user_id}
  - {name: merchant, key: merchant_id}
sources:
  - {name: transactions, topic: transactions-{{ID}}, schema: transaction.avsc, event_time: ts, entity: user}
features:
  - {name: user_count_life, version: 1, entity: user, source: transactions, aggregation: count, window: lifetime, owner: t, description: d}
  - {name: merchant_max_30d, version: 1, entity: merchant, source: transactions, aggregation: max, field: amount, window: 30d, hop: 12h, owner: t, description: d}
  - {name: merchant_count_1d, version: 1, entity: merchant, source: transactions, aggregation: count, window: 1d, owner: t, description: d}
`

// TestShardedRekeyedMatchesSingleProcess: a re-keyed source cannot be split
// by partition (a merchant's events are in every partition, by user); each
// shard reads it in full and keeps its merchants, and the union of the
// shards' rows is the single run's.
func TestShardedRekeyedMatchesSingleProcess(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, rekeyShardFile, testkit.SetupOptions{})
	brokers := k.Brokers
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	now := time.Now().Add(-time.Minute).UnixMilli()
	var recs []*kgo.Record
	for i := 0; i < 600; i++ {
		ts := now - rng.Int64N(20*aggregations.Day)
		r, err := enc.Record(map[string]any{"user_id": fmt.Sprintf("u%d", rng.IntN(30)), "ts": ts,
			"merchant_id": fmt.Sprintf("m%d", rng.IntN(12)), "amount": randomAmount(rng), "currency": "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		r.Timestamp = time.UnixMilli(ts)
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spine := filepath.Join(dir, "spine.csv")
	var sb strings.Builder
	sb.WriteString("merchant_id,timestamp,label\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&sb, "m%d,%d,%d\n", rng.IntN(14), now-rng.Int64N(15*aggregations.Day), i) // m12, m13: no events
	}
	if err := os.WriteFile(spine, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	base := Options{Brokers: brokers, Config: cfg, Spine: spine}
	single := base
	single.Out = filepath.Join(dir, "single.parquet")
	m1, err := Run(ctx, single)
	if err != nil {
		t.Fatal(err)
	}
	want := readTable(t, single.Out)
	byLabel := map[string]int{}
	for i, row := range want.cells {
		byLabel[row[want.col(t, "label")]] = i
	}
	const n = 2
	out := filepath.Join(dir, "sharded")
	var ds *Manifest
	got := 0
	for i := 0; i < n; i++ {
		o := base
		o.Out, o.Shard = out, Shard{Index: i, Count: n}
		m, err := Run(ctx, o)
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		if len(m.Shards) > 0 {
			ds = m
		}
		tb := readTable(t, filepath.Join(out, o.Shard.PartFile()))
		if len(tb.cells) == 0 {
			t.Fatalf("shard %d has no rows", i)
		}
		for r, row := range tb.cells {
			w, ok := byLabel[row[tb.col(t, "label")]]
			if !ok || !slices.Equal(row, want.cells[w]) || !slices.Equal(tb.null[r], want.null[w]) {
				t.Fatalf("shard %d row %v (nulls %v), single run row %d", i, row, tb.null[r], w)
			}
			got++
		}
		if m.Shard != nil && m.Events.Records != m1.Events.Records {
			t.Fatalf("shard %d read %d records, want all %d (a re-keyed source is read in full)", i, m.Events.Records, m1.Events.Records)
		}
	}
	if got != len(want.cells) || ds == nil || ds.Output.Rows != m1.Output.Rows || !slices.Equal(ds.Sources, m1.Sources) ||
		ds.Events.Records != n*m1.Events.Records {
		t.Fatalf("%d rows in the shards, single run %d; dataset manifest %+v", got, len(want.cells), ds)
	}
}

// runShards runs backfill o as n shards, one after the other, into the
// dataset directory out, and returns the dataset manifest (the last
// shard's) and, per shard, the spine rows it must hold, in spine order:
// those whose key's canonical partition among partitions is the shard's
// index modulo n. It fails t when a shard holds no row.
func runShards(t *testing.T, o Options, out string, n, partitions int, rows []spineRow) (*Manifest, [][]int) {
	t.Helper()
	var ds *Manifest
	for i := range n {
		o.Out, o.Shard = out, Shard{Index: i, Count: n}
		m, err := Run(context.Background(), o)
		if err != nil {
			t.Fatalf("shard %d/%d: %v", i, n, err)
		}
		ds = m
	}
	if len(ds.Shards) != n {
		t.Fatalf("the last shard returned %d shards, want the dataset of %d", len(ds.Shards), n)
	}
	owned := make([][]int, n)
	part := newPartitioner()
	for r, row := range rows {
		s := part.partition(row.key, partitions) % n
		owned[s] = append(owned[s], r)
	}
	for i, rs := range owned {
		if len(rs) == 0 {
			t.Fatalf("shard %d/%d owns no spine row: the scenario does not split", i, n)
		}
	}
	return ds, owned
}
