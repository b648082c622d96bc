package backfill

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

// featureFile has one entity, two sources and every aggregation over finite
// and lifetime windows with default and explicit hops, a feature with a
// declared default and two versions of one feature, and a feature service.
var featureFile = testkit.KafkaSection(3) + testkit.UserTransactions + `  - name: logins
    topic: logins-{{ID}}
    schema: login.avsc
    event_time: ts
features:
  - {name: txn_avg_30d, version: 1, entity: user, source: transactions, aggregation: avg, field: amount, window: 30d, owner: t, description: d}
  - {name: txn_avg_30d, version: 2, entity: user, source: transactions, aggregation: avg, field: amount, window: 7d, hop: 1h, owner: t, description: d}
  - {name: txn_sum_1d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: txn_count_7d, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, hop: 6h, owner: t, description: d}
  - {name: txn_min_7d, version: 1, entity: user, source: transactions, aggregation: min, field: amount, window: 7d, default: -1, owner: t, description: d}
  - {name: txn_max_30d, version: 1, entity: user, source: transactions, aggregation: max, field: amount, window: 30d, hop: 12h, owner: t, description: d}
  - {name: txn_last, version: 1, entity: user, source: transactions, aggregation: last, field: amount, window: lifetime, owner: t, description: d}
  - {name: txn_count_life, version: 1, entity: user, source: transactions, aggregation: count, window: lifetime, owner: t, description: d}
  - {name: login_count_1h, version: 1, entity: user, source: logins, aggregation: count, window: 1h, owner: t, description: d}
  - {name: txn_var_1d, version: 1, entity: user, source: transactions, aggregation: variance, field: amount, window: 1d, owner: t, description: d}
  - {name: txn_stddev_7d, version: 1, entity: user, source: transactions, aggregation: stddev, field: amount, window: 7d, default: -1, owner: t, description: d}
  - {name: txn_var_samp_30d, version: 1, entity: user, source: transactions, aggregation: variance_samp, field: amount, window: 30d, hop: 12h, owner: t, description: d}
  - {name: txn_stddev_samp_life, version: 1, entity: user, source: transactions, aggregation: stddev_samp, field: amount, window: lifetime, owner: t, description: d}
  - {name: txn_first, version: 1, entity: user, source: transactions, aggregation: first, field: amount, window: lifetime, owner: t, description: d}
  - {name: txn_distinct_30d, version: 1, entity: user, source: transactions, aggregation: approx_distinct, field: amount, window: 30d, owner: t, description: d}
  - {name: txn_p95_7d, version: 1, entity: user, source: transactions, aggregation: approx_percentile, percentile: 0.95, field: amount, window: 7d, hop: 6h, owner: t, description: d}
services:
  - {name: fraud_scoring, owner: t, description: d, features: [txn_avg_30d@1, txn_avg_30d, txn_count_7d, login_count_1h@1]}
`

// setup starts the broker (KAFKA_BROKERS or a fresh kfake), writes
// featureFile with names unique to the test and returns the brokers, the
// file and a client for which every topic it names exists (testkit.Setup;
// clientOpts win over its defaults).
func setup(t testing.TB, clientOpts ...kgo.Opt) ([]string, *config.File, *kgo.Client) {
	t.Helper()
	k, cfg, cl := testkit.Setup(t, featureFile, testkit.SetupOptions{ClientOpts: clientOpts})
	return k.Brokers, cfg, cl
}

// genEvent is one source record to produce.
type genEvent struct {
	source  string
	key     string
	ts      int64 // event time
	arrival int64 // Kafka record timestamp
	amount  float64
	junk    bool // not Avro: every reader must skip it
}

// stored is a produced valid event with what the brute force needs.
type stored struct {
	ev      aggregations.Event
	arrival int64
}

// world is what a test produced: valid events by source and key, and the
// record timestamp and offset of every record by topic and partition.
type world struct {
	events  map[string]map[string][]stored // source -> key -> events
	records map[string]map[int32][]kgo.Record
}

func newWorld() *world {
	return &world{events: map[string]map[string][]stored{}, records: map[string]map[int32][]kgo.Record{}}
}

// produceAll produces events as one batch with their arrival as the record
// timestamp; valid ones (valid reports which) are remembered with their offsets.
func produceAll(t testing.TB, ctx context.Context, cl *kgo.Client, cfg *config.File, evs []genEvent, valid func(genEvent) bool, w *world) {
	t.Helper()
	encs := map[string]*produce.Encoder{}
	recs := make([]*kgo.Record, 0, len(evs))
	for _, e := range evs {
		enc := encs[e.source]
		if enc == nil {
			var err error
			if enc, err = produce.NewEncoder(cfg, e.source); err != nil {
				t.Fatal(err)
			}
			encs[e.source] = enc
		}
		var r *kgo.Record
		if e.junk {
			r = &kgo.Record{Topic: enc.Source().Topic, Key: []byte(e.key), Value: []byte("not avro")}
		} else {
			var err error
			if r, err = enc.Record(testkit.Event(e.source, e.key, e.ts, e.amount)); err != nil {
				t.Fatal(err)
			}
		}
		r.Timestamp = time.UnixMilli(e.arrival)
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	for i, r := range recs { // ProduceSync set Partition and Offset
		if w.records[r.Topic] == nil {
			w.records[r.Topic] = map[int32][]kgo.Record{}
		}
		w.records[r.Topic][r.Partition] = append(w.records[r.Topic][r.Partition], *r)
		e := evs[i]
		if e.junk || !valid(e) {
			continue
		}
		if w.events[e.source] == nil {
			w.events[e.source] = map[string][]stored{}
		}
		w.events[e.source][e.key] = append(w.events[e.source][e.key],
			stored{ev: aggregations.Event{TS: e.ts, Seq: r.Offset, Value: e.amount}, arrival: e.arrival})
	}
	for _, parts := range w.records {
		for _, recs := range parts {
			slices.SortFunc(recs, func(a, b kgo.Record) int { return cmp.Compare(a.Offset, b.Offset) })
		}
	}
}

// spineRow is one row of a test spine.
type spineRow struct {
	key   string
	T     int64
	label int
}

// writeSpine writes rows as CSV (timestamp in RFC 3339 for even rows, epoch
// ms for odd ones) or Parquet (user_id string, timestamp TIMESTAMP(millis),
// label int32, note string).
func writeSpine(t testing.TB, path string, rows []spineRow) {
	t.Helper()
	format, err := FormatOf(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if format == FormatCSV {
		w := csv.NewWriter(f)
		w.Write([]string{"label", "user_id", "timestamp", "note"})
		for i, r := range rows {
			ts := strconv.FormatInt(r.T, 10)
			if i%2 == 0 {
				ts = time.UnixMilli(r.T).UTC().Format(time.RFC3339Nano)
			}
			w.Write([]string{strconv.Itoa(r.label), r.key, ts, "n" + strconv.Itoa(i)})
		}
		w.Flush()
		if err := w.Error(); err != nil {
			t.Fatal(err)
		}
		return
	}
	schema := parquet.NewSchema("spine", orderedGroup{
		namedNode{parquet.Leaf(parquet.Int32Type), "label"},
		namedNode{parquet.String(), "user_id"},
		namedNode{parquet.Timestamp(parquet.Millisecond), "timestamp"},
		namedNode{parquet.Optional(parquet.String()), "note"},
	})
	pw := parquet.NewWriter(f, schema)
	for i, r := range rows {
		note := parquet.NullValue().Level(0, 0, 3)
		if i%3 != 0 {
			note = parquet.ByteArrayValue([]byte("n"+strconv.Itoa(i))).Level(0, 1, 3)
		}
		row := parquet.Row{
			parquet.Int32Value(int32(r.label)).Level(0, 0, 0),
			parquet.ByteArrayValue([]byte(r.key)).Level(0, 0, 1),
			parquet.Int64Value(r.T).Level(0, 0, 2),
			note,
		}
		if _, err := pw.WriteRows([]parquet.Row{row}); err != nil {
			t.Fatal(err)
		}
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
}

// table is an output file read back: column names, cell text and nulls.
type table struct {
	columns []string
	cells   [][]string
	null    [][]bool
	pschema *parquet.Schema // Parquet only
}

func (tb *table) col(t testing.TB, name string) int {
	t.Helper()
	for i, c := range tb.columns {
		if c == name {
			return i
		}
	}
	t.Fatalf("output has no column %q (columns: %v)", name, tb.columns)
	return -1
}

// readTable reads a CSV (empty cell = null) or Parquet output.
func readTable(t testing.TB, path string) *table {
	t.Helper()
	format, err := FormatOf(path)
	if err != nil {
		t.Fatal(err)
	}
	tb := &table{}
	if format == FormatCSV {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		recs, err := csv.NewReader(f).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		tb.columns = recs[0]
		for _, r := range recs[1:] {
			nulls := make([]bool, len(r))
			for i, c := range r {
				nulls[i] = c == ""
			}
			tb.cells, tb.null = append(tb.cells, r), append(tb.null, nulls)
		}
		return tb
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	tb.pschema = pf.Schema()
	for _, fl := range tb.pschema.Fields() {
		tb.columns = append(tb.columns, fl.Name())
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	buf := make([]parquet.Row, 64)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			cells := make([]string, len(row))
			nulls := make([]bool, len(row))
			for i, v := range row {
				cells[i], nulls[i] = cellString(v), v.IsNull()
			}
			tb.cells, tb.null = append(tb.cells, cells), append(tb.null, nulls)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return tb
}

// randomAmount is a whole number of cents, so sums are exact enough to
// compare with the brute force within aggtest.Within.
func randomAmount(rng *rand.Rand) float64 { return float64(rng.IntN(100_000)) / 100 }
