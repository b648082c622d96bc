package backfill

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

const visitSchema = `{"type": "record", "name": "Visit", "namespace": "featurepipe.test", "fields": [
  {"name": "user_id", "type": "string"},
  {"name": "card", "type": "long"},
  {"name": "flag", "type": "boolean"},
  {"name": "ts", "type": "long"}]}`

var keptFile = testkit.KafkaSection(3) + `entities:
  - name: user
    key: user_id
sources:
  - name: visits
    topic: visits-{{ID}}
    schema: visit.avsc
    event_time: ts
features:
  - {name: last_card, version: 1, entity: user, source: visits, aggregation: last, field: card, window: 7d, owner: t, description: d}
  - {name: first_flag, version: 1, entity: user, source: visits, aggregation: first, field: flag, window: lifetime, owner: t, description: d}
  - {name: cards3, version: 1, entity: user, source: visits, aggregation: last_k, k: 3, field: card, window: 7d, owner: t, description: d}
  - {name: flags2, version: 1, entity: user, source: visits, aggregation: first_k, k: 2, field: flag, window: 7d, owner: t, description: d}
  - {name: card_count, version: 1, entity: user, source: visits, aggregation: count, window: 7d, owner: t, description: d}
`

// TestKeptLongsAndBooleansInCSVAndParquet: last, first, last_k and first_k
// of a long and a boolean field keep their type in a backfill: Parquet
// INT64 and BOOLEAN columns (LISTs of them), CSV integers (longs near
// 2^53, exact) and true/false (JSON lists of them), equal at every spine
// row to aggtest.BruteForce / BruteForceList; a record whose long is
// beyond 2^53 is refused (inexact_long) and counts nowhere; Compute
// answers the same numbers.
func TestKeptLongsAndBooleansInCSVAndParquet(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, keptFile, testkit.SetupOptions{Files: map[string]string{"visit.avsc": visitSchema}})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "visits")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	h := aggregations.Hour
	rng := rand.New(rand.NewPCG(3, 3))
	type visit struct {
		key  string
		ts   int64
		card int64
		flag bool
	}
	var vs []visit
	for i := range 40 {
		key := []string{"a", "b", "c"}[i%3]
		vs = append(vs, visit{key, now - rng.Int64N(9*24*h), 1<<53 - rng.Int64N(1000), rng.IntN(2) == 0})
	}
	vs = append(vs, visit{"a", now - 5*h, -(1 << 53), true}, visit{"a", now - 5*h, 7, false}) // a tie on ts: offset order
	bad := visit{"a", now - h, 1<<53 + 1, true}                                               // refused: beyond 2^53
	var recs []*kgo.Record
	for _, v := range vs {
		r, err := enc.Record(map[string]any{"user_id": v.key, "card": v.card, "flag": v.flag, "ts": v.ts})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	// produce refuses the bad record as the workers would: encode it by hand.
	raw, err := enc.Source().Schema.Encode(nil, map[string]any{"user_id": bad.key, "card": bad.card, "flag": bad.flag, "ts": bad.ts})
	if err != nil {
		t.Fatal(err)
	}
	recs = append(recs, &kgo.Record{Topic: enc.Source().Topic, Key: []byte(bad.key), Value: raw})
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The brute force over the valid visits, longs and booleans as their
	// exact float64s.
	cards, flags := map[string][]aggregations.Event{}, map[string][]aggregations.Event{}
	for i, v := range vs {
		seq := aggregations.Seq(recs[i].Partition, recs[i].Offset)
		b := 0.0
		if v.flag {
			b = 1
		}
		cards[v.key] = append(cards[v.key], aggregations.Event{TS: v.ts, Seq: seq, Value: float64(v.card)})
		flags[v.key] = append(flags[v.key], aggregations.Event{TS: v.ts, Seq: seq, Value: b})
	}
	text := func(x float64, long bool) string {
		if long {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatBool(x != 0)
	}
	// want is the expected cell text (CSV) of feature name for key at T.
	want := func(name, key string, T int64) string {
		f, _ := cfg.Feature(name)
		evs, long := flags[key], false
		if f.Field == "card" {
			evs, long = cards[key], true
		}
		known := slices.ContainsFunc(evs, func(e aggregations.Event) bool { return e.TS < T })
		if !known { // NOT_FOUND: null, count included
			return ""
		}
		if f.Aggregation.List() {
			l, ok := aggtest.BruteForceList(f.Aggregation, f.Window, evs, T)
			if !ok {
				return ""
			}
			parts := make([]string, len(l))
			for i, x := range l {
				parts[i] = text(x, long)
			}
			return "[" + strings.Join(parts, ",") + "]"
		}
		if f.Aggregation == aggregations.Count {
			x, _ := aggtest.BruteForce(f.Aggregation, f.Window, evs, T)
			return formatFloat(x)
		}
		x, ok := aggtest.BruteForce(f.Aggregation, f.Window, evs, T)
		if !ok {
			return ""
		}
		return text(x, long)
	}
	var rows []spineRow
	for _, key := range []string{"a", "b", "c", "nobody"} {
		for _, T := range []int64{now - 8*24*h, now - 5*h, now - 5*h + 1, now + 1} {
			rows = append(rows, spineRow{key: key, T: T})
		}
	}
	names := []string{"last_card", "first_flag", "cards3", "flags2", "card_count"}
	dir := t.TempDir()
	for _, format := range []string{"csv", "parquet"} {
		spine, out := filepath.Join(dir, "spine-"+format+".csv"), filepath.Join(dir, "out."+format)
		writeSpine(t, spine, rows)
		m, err := Run(ctx, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Out: out, Features: names})
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if m.Events.Rejected[events.ReasonInexactLong] != 1 {
			t.Errorf("%s: rejected %v, want 1 %s (the long beyond 2^53)", format, m.Events.Rejected, events.ReasonInexactLong)
		}
		got := readTyped(t, out, format, names)
		lists := 0
		for i, r := range rows {
			for _, name := range names {
				w := want(name, r.key, r.T)
				if got[name][i] != w {
					t.Errorf("%s row %d (%s, T=now%+dh) %s = %q, want %q", format, i, r.key, (r.T-now)/h, name, got[name][i], w)
				}
				if strings.Count(w, ",") >= 1 {
					lists++
				}
			}
		}
		if lists == 0 {
			t.Errorf("%s: no list had two values", format)
		}
	}
	points := make([]Point, len(rows))
	for i, r := range rows {
		points[i] = Point{Key: r.key, T: r.T}
	}
	v, err := Compute(ctx, Options{Brokers: k.Brokers, Config: cfg, Features: []string{"last_card"}}, points)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		x, ok := v.Get(i, 0)
		if w := want("last_card", r.key, r.T); (w == "") == ok || (ok && strconv.FormatInt(int64(x), 10) != w) {
			t.Errorf("Compute row %d last_card = %v (%v), want %q", i, x, ok, w)
		}
	}
}

// readTyped reads the named feature columns of an output as CSV text: a
// CSV's cells as written; a Parquet file's values (whose leaf types it
// checks: INT64 for card features and count's DOUBLE, BOOLEAN for flags)
// formatted like the CSV, lists as JSON text.
func readTyped(t *testing.T, path, format string, names []string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	if format == "csv" {
		tb := readTable(t, path)
		for _, name := range names {
			c := tb.col(t, name)
			for _, row := range tb.cells {
				out[name] = append(out[name], row[c])
			}
		}
		return out
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
	cols := map[int]string{}
	isList := map[string]bool{}
	for _, name := range names {
		leaf, ok := pf.Schema().Lookup(name, "list", "element")
		isList[name] = ok
		if !ok {
			leaf, _ = pf.Schema().Lookup(name)
		}
		wantKind := map[string]parquet.Kind{"last_card": parquet.Int64, "cards3": parquet.Int64, "first_flag": parquet.Boolean,
			"flags2": parquet.Boolean, "card_count": parquet.Double}[name]
		if leaf.Node == nil || leaf.Node.Type().Kind() != wantKind {
			t.Fatalf("column %s: %v, want %v", name, leaf.Node, wantKind)
		}
		cols[leaf.ColumnIndex] = name
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	buf := make([]parquet.Row, 16)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			cells := map[string][]string{}
			for _, v := range row {
				if name, ok := cols[v.Column()]; ok && !v.IsNull() {
					cells[name] = append(cells[name], cellString(v))
				}
			}
			for _, name := range names {
				s := strings.Join(cells[name], ",")
				if isList[name] && cells[name] != nil {
					s = "[" + s + "]"
				}
				out[name] = append(out[name], s)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}
