package backfill

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

var bucketFile = testkit.KafkaSection(3) + testkit.UserTransactions + `features:
  - {name: sum_by_cur_7d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, bucket: currency, max_buckets: 2, window: 7d, hop: 6h, owner: t, description: d}
  - {name: count_by_cur, version: 1, entity: user, source: transactions, aggregation: count, bucket: currency, window: lifetime, owner: t, description: d}
  - {name: last_by_merchant_1d, version: 1, entity: user, source: transactions, aggregation: last, field: amount, bucket: merchant_id, window: 1d, owner: t, description: d}
  - {name: sum_7d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, hop: 6h, owner: t, description: d}
`

// bucketEvent is a transaction with its currency and merchant.
type bucketEvent struct {
	key, currency, merchant string
	ts                      int64
	amount                  float64
	seq                     int64 // aggregations.Seq of the produced record
}

// produceBucketEvents produces evs to the transactions topic and returns
// them by key with their Seq.
func produceBucketEvents(t *testing.T, ctx context.Context, cl *kgo.Client, enc *produce.Encoder, evs []bucketEvent) map[string][]bucketEvent {
	t.Helper()
	recs := make([]*kgo.Record, 0, len(evs))
	for _, e := range evs {
		r, err := enc.Record(map[string]any{"user_id": e.key, "ts": e.ts, "merchant_id": e.merchant, "amount": e.amount, "currency": e.currency})
		if err != nil {
			t.Fatal(err)
		}
		r.Timestamp = time.UnixMilli(e.ts)
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out := map[string][]bucketEvent{}
	for i, e := range evs { // ProduceSync set Partition and Offset
		e.seq = aggregations.Seq(recs[i].Partition, recs[i].Offset)
		out[e.key] = append(out[e.key], e)
	}
	return out
}

// wantBuckets is the brute force of a bucketed feature as of T: a map
// from bucket to value (nil: null), and whether the map is not null.
func wantBuckets(t *testing.T, evs []aggregations.Event, name string, T int64, cfgFeature func(string) (aggregations.Kind, aggregations.Window, int)) (map[string]*float64, bool) {
	k, w, maxB := cfgFeature(name)
	groups := aggtest.BucketGroups(w, evs, T, maxB)
	if len(groups) == 0 {
		if k.EmptyIsZero() {
			return map[string]*float64{}, true
		}
		return nil, false
	}
	out := map[string]*float64{}
	for key, g := range groups {
		v, ok := aggtest.BruteForce(k, w, g, T)
		if ok {
			out[key] = &v
		} else {
			out[key] = nil
		}
	}
	return out, true
}

// TestBucketedFeaturesInCSVAndParquet: a backfill writes a bucketed
// feature as a JSON object in CSV and as a Parquet MAP, equal at every
// spine row to the brute force (aggtest.BucketGroups, then BruteForce per
// bucket) over the produced events, with max_buckets folding into
// __other__, an empty map for an empty count/sum window and null for an
// empty last or an unknown key; Compute answers the same maps; a sharded
// run (2 shards) writes the same maps as the single run.
func TestBucketedFeaturesInCSVAndParquet(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, bucketFile, testkit.SetupOptions{})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	h := aggregations.Hour
	var evs []bucketEvent
	curs := []string{"EUR", "USD", "EUR", "GBP", "EUR", "USD", "CHF"}
	for i := range 14 {
		evs = append(evs, bucketEvent{"many", curs[i%len(curs)], fmt.Sprintf("m%d", i%3), now - int64(i*5%14)*10*h, float64(i), 0})
	}
	evs = append(evs, bucketEvent{"many", "JPY", "m9", now - 5*h, 100, 0}, bucketEvent{"many", "JPY", "m9", now - 5*h, 101, 0}) // a tie on event time
	evs = append(evs, bucketEvent{"few", "EUR", "m1", now - 3*h, 7, 0}, bucketEvent{"old", "USD", "m2", now - 30*aggregations.Day, 9, 0})
	byKey := produceBucketEvents(t, ctx, cl, enc, evs)

	var rows []spineRow
	for _, key := range []string{"many", "few", "old", "nobody"} {
		for _, T := range []int64{now - 40*h, now - 5*h, now - 5*h + 1, now + 1} {
			rows = append(rows, spineRow{key: key, T: T})
		}
	}
	feature := func(name string) (aggregations.Kind, aggregations.Window, int) {
		f, err := cfg.Feature(name)
		if err != nil {
			t.Fatal(err)
		}
		return f.Aggregation, f.Window, f.MaxBuckets
	}
	raw := func(name, key string) []aggregations.Event {
		f, _ := cfg.Feature(name)
		var out []aggregations.Event
		for _, e := range byKey[key] {
			b := e.currency
			if f.Bucket == "merchant_id" {
				b = e.merchant
			}
			out = append(out, aggregations.Event{TS: e.ts, Seq: e.seq, Value: e.amount, Bucket: b})
		}
		return out
	}
	names := []string{"sum_by_cur_7d", "count_by_cur", "last_by_merchant_1d"}
	check := func(what string, got map[string][]map[string]*float64, gotOK map[string][]bool, idx func(i int) int) (others, empties, nulls int) {
		for _, name := range names {
			for i := range got[name] {
				r := rows[idx(i)]
				want, wantOK := wantBuckets(t, raw(name, r.key), name, r.T, feature)
				known := false // NOT_FOUND (null) until the entity's first event
				for _, e := range byKey[r.key] {
					known = known || e.ts < r.T
				}
				if !known {
					want, wantOK = nil, false
				}
				if gotOK[name][i] != wantOK || !sameBuckets(got[name][i], want) {
					t.Errorf("%s row %d (%s, T=%d) %s = %v (%v), want %v (%v)", what, i, r.key, r.T, name, fmtBuckets(got[name][i]), gotOK[name][i], fmtBuckets(want), wantOK)
				}
				if _, ok := want[aggregations.OtherBucket]; ok {
					others++
				}
				if wantOK && len(want) == 0 {
					empties++
				}
				if !wantOK {
					nulls++
				}
			}
		}
		return
	}
	dir := t.TempDir()
	for _, format := range []string{"csv", "parquet"} {
		spine, out := filepath.Join(dir, "spine-"+format+".csv"), filepath.Join(dir, "out."+format)
		writeSpine(t, spine, rows)
		m, err := Run(ctx, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Out: out, Features: append([]string{"sum_7d"}, names...)})
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		for _, mf := range m.Features {
			if mf.Statistics == nil {
				t.Errorf("%s: no manifest statistics of %s", format, mf.Name)
			}
		}
		got, gotOK := readBuckets(t, out, format, names)
		others, empties, nulls := check(format, got, gotOK, func(i int) int { return i })
		if others == 0 || empties == 0 || nulls == 0 {
			t.Errorf("%s: the test did not reach __other__ (%d), an empty map (%d) and null (%d)", format, others, empties, nulls)
		}
	}
	// Compute answers the same maps.
	points := make([]Point, len(rows))
	for i, r := range rows {
		points[i] = Point{Key: r.key, T: r.T}
	}
	v, err := Compute(ctx, Options{Brokers: k.Brokers, Config: cfg, Features: names}, points)
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	got, gotOK := map[string][]map[string]*float64{}, map[string][]bool{}
	for c, name := range names {
		if !v.IsBuckets(c) {
			t.Fatalf("IsBuckets(%d) false", c)
		}
		for i := range rows {
			cells, ok := v.Buckets(i, c)
			got[name] = append(got[name], cellsMap(cells, ok))
			gotOK[name] = append(gotOK[name], ok)
		}
	}
	check("Compute", got, gotOK, func(i int) int { return i })

	// A sharded run writes the same maps, row by row.
	spine := filepath.Join(dir, "spine-shard.csv")
	writeSpine(t, spine, rows)
	single, singleOK := readBuckets(t, filepath.Join(dir, "out.parquet"), "parquet", names)
	sharded := filepath.Join(dir, "sharded")
	_, owned := runShards(t, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Features: names}, sharded, 2, 3, rows)
	seen := 0
	for i, rs := range owned {
		got, gotOK := readBuckets(t, filepath.Join(sharded, Shard{Index: i, Count: 2}.PartFile()), "parquet", names)
		for _, name := range names {
			if len(got[name]) != len(rs) {
				t.Fatalf("shard %d: %d rows of %s, want %d", i, len(got[name]), name, len(rs))
			}
			for j, r := range rs {
				if gotOK[name][j] != singleOK[name][r] || !sameBuckets(got[name][j], single[name][r]) {
					t.Errorf("shard %d row %d (spine row %d) %s = %v, single run %v", i, j, r, name, fmtBuckets(got[name][j]), fmtBuckets(single[name][r]))
				}
				seen += len(got[name][j])
			}
		}
	}
	if seen == 0 {
		t.Error("sharded: every map was empty or null")
	}
}

// sameBuckets tells whether two maps hold the same buckets and values
// (aggtest.Close).
func sameBuckets(a, b map[string]*float64) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || (x == nil) != (y == nil) || (x != nil && !aggtest.Close(*x, *y)) {
			return false
		}
	}
	return true
}

func fmtBuckets(m map[string]*float64) string {
	if m == nil {
		return "null"
	}
	s := "{"
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] == nil {
			s += k + ":null "
		} else {
			s += fmt.Sprintf("%s:%v ", k, *m[k])
		}
	}
	return s + "}"
}

// cellsMap is a map of BucketCells (nil when not ok).
func cellsMap(cells []BucketCell, ok bool) map[string]*float64 {
	if !ok {
		return nil
	}
	m := map[string]*float64{}
	for _, c := range cells {
		if c.OK {
			v := c.Value
			m[c.Key] = &v
		} else {
			m[c.Key] = nil
		}
	}
	return m
}

// readBuckets reads the named map columns of an output: CSV cells as JSON
// objects (an empty cell: null), Parquet MAP columns by their levels.
func readBuckets(t *testing.T, path, format string, names []string) (map[string][]map[string]*float64, map[string][]bool) {
	t.Helper()
	out, oks := map[string][]map[string]*float64{}, map[string][]bool{}
	if format == "csv" {
		tb := readTable(t, path)
		for _, name := range names {
			c := tb.col(t, name)
			for i, row := range tb.cells {
				var m map[string]*float64
				if !tb.null[i][c] {
					if err := json.Unmarshal([]byte(row[c]), &m); err != nil {
						t.Fatalf("%s row %d: %q: %v", name, i, row[c], err)
					}
				}
				out[name] = append(out[name], m)
				oks[name] = append(oks[name], !tb.null[i][c])
			}
		}
		return out, oks
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pf, err := parquet.OpenFile(f, mustSize(t, f))
	if err != nil {
		t.Fatal(err)
	}
	keyCol, valCol := map[int]string{}, map[int]string{}
	for _, name := range names {
		kl, ok1 := pf.Schema().Lookup(name, "key_value", "key")
		vl, ok2 := pf.Schema().Lookup(name, "key_value", "value")
		if !ok1 || !ok2 {
			t.Fatalf("no MAP column %s in %v", name, pf.Schema())
		}
		keyCol[kl.ColumnIndex], valCol[vl.ColumnIndex] = name, name
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	buf := make([]parquet.Row, 16)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			keys, vals, present := map[string][]string{}, map[string][]*float64{}, map[string]bool{}
			for _, v := range row {
				if name, ok := keyCol[v.Column()]; ok {
					present[name] = v.DefinitionLevel() >= 1
					if v.DefinitionLevel() >= 2 {
						keys[name] = append(keys[name], string(v.ByteArray()))
					}
				}
				if name, ok := valCol[v.Column()]; ok && v.DefinitionLevel() >= 2 {
					var x *float64
					if v.DefinitionLevel() == 3 {
						d := v.Double()
						if v.Kind() == parquet.Int64 {
							d = float64(v.Int64())
						}
						x = &d
					}
					vals[name] = append(vals[name], x)
				}
			}
			for _, name := range names {
				var m map[string]*float64
				if present[name] {
					m = map[string]*float64{}
					if len(keys[name]) != len(vals[name]) || !slices.IsSortedFunc(keys[name], cmp.Compare[string]) {
						t.Fatalf("%s: keys %q, %d values", name, keys[name], len(vals[name]))
					}
					for i, k := range keys[name] {
						m[k] = vals[name][i]
					}
				}
				out[name] = append(out[name], m)
				oks[name] = append(oks[name], present[name])
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return out, oks
}
