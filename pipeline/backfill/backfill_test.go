package backfill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

const (
	users    = 25
	oldLogin = 60 * aggregations.Day // age of the logins no window needs
)

// scenario is a produced world plus the spine rows that probe it.
type scenario struct {
	cfg     *config.File
	brokers []string
	w       *world
	rows    []spineRow
	now     int64
	nOld    int // old logins, produced first
}

// newScenario produces, on a fresh broker (or unique topics of Apache Kafka):
//   - old logins, 60 days before now, first in every partition;
//   - out-of-order transactions and logins over 45 days, in four batches,
//     arriving late (up to 3 days) or early (event time up to 2h after arrival);
//   - invalid records: junk bytes and event times 25h after their arrival;
//
// and builds a spine of random rows plus rows on tile boundaries, exactly at
// and just after event times and arrivals, for users with and without events.
func newScenario(t *testing.T, seed uint64) *scenario {
	t.Helper()
	ctx := context.Background()
	brokers, cfg, cl := setup(t)
	rng := rand.New(rand.NewPCG(seed, 99))
	now := time.Now().Add(-time.Minute).UnixMilli()
	s := &scenario{cfg: cfg, brokers: brokers, w: newWorld(), now: now}
	user := func() string { return fmt.Sprintf("user-%02d", rng.IntN(users)) }
	valid := func(e genEvent) bool { return e.ts <= e.arrival+24*aggregations.Hour }

	var old []genEvent
	for i := 0; i < 60; i++ {
		ts := now - oldLogin - rng.Int64N(aggregations.Day)
		old = append(old, genEvent{source: "logins", key: user(), ts: ts, arrival: ts + rng.Int64N(aggregations.Minute)})
	}
	s.nOld = len(old)
	produceAll(t, ctx, cl, cfg, old, valid, s.w)

	for batch := 0; batch < 4; batch++ {
		var evs []genEvent
		for i := 0; i < 700; i++ {
			src := "transactions"
			if rng.IntN(5) == 0 {
				src = "logins"
			}
			ts := now - 1000 - rng.Int64N(45*aggregations.Day)
			if rng.IntN(4) == 0 { // recent, so short windows are not empty
				ts = now - 1000 - rng.Int64N(3*aggregations.Hour)
			}
			if rng.IntN(10) == 0 { // on a tile boundary
				ts -= ts % aggregations.Hour
			}
			arrival := ts + rng.Int64N(5*aggregations.Minute)
			switch rng.IntN(8) {
			case 0: // late
				arrival = ts + rng.Int64N(3*aggregations.Day)
			case 1: // early: event time after arrival (allowed up to 24h)
				arrival = ts - rng.Int64N(2*aggregations.Hour)
			}
			arrival = min(arrival, now)
			evs = append(evs, genEvent{source: src, key: user(), ts: ts, arrival: arrival, amount: randomAmount(rng)})
		}
		for i := 0; i < 10; i++ {
			a := now - rng.Int64N(20*aggregations.Day)
			evs = append(evs, genEvent{source: "transactions", key: user(), ts: a + 25*aggregations.Hour, arrival: a, amount: 1e6}) // future: rejected
			evs = append(evs, genEvent{source: "transactions", key: user(), arrival: a, junk: true})
		}
		rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		produceAll(t, ctx, cl, cfg, evs, valid, s.w)
	}

	// Spine rows: T in the last 30 days, so old logins are in no window.
	label := 0
	add := func(key string, T int64) {
		s.rows = append(s.rows, spineRow{key: key, T: T, label: label})
		label++
	}
	for i := 0; i < 250; i++ {
		add(user(), now-rng.Int64N(30*aggregations.Day))
	}
	for _, step := range []int64{5 * aggregations.Minute, aggregations.Hour, 6 * aggregations.Hour, 12 * aggregations.Hour, aggregations.Day} {
		for i := 0; i < 8; i++ {
			T := now - rng.Int64N(30*aggregations.Day)
			add(user(), T-T%step)
		}
	}
	for _, src := range []string{"transactions", "logins"} {
		keys := slices.Sorted(maps.Keys(s.w.events[src]))
		for _, key := range keys {
			evs := s.w.events[src][key]
			for i := 0; i < 3; i++ {
				e := evs[rng.IntN(len(evs))]
				if e.ev.TS < now-30*aggregations.Day {
					continue
				}
				add(key, e.ev.TS)   // the event itself is excluded
				add(key, e.ev.TS+1) // and included one millisecond later
				add(key, e.arrival) // arrival mode: arrived exactly at T counts
			}
		}
	}
	for i := 0; i < 10; i++ {
		add(fmt.Sprintf("ghost-%d", i), now-rng.Int64N(30*aggregations.Day)) // no events at all
	}
	rng.Shuffle(len(s.rows), func(i, j int) { s.rows[i], s.rows[j] = s.rows[j], s.rows[i] })
	return s
}

// want is the brute-force value of feature f for row r: null (NOT_FOUND)
// when the row's key has no event before T (arrived by T in arrival mode)
// in any source of its entity.
func (s *scenario) want(f *config.Feature, r spineRow, mode Mode) (float64, bool) {
	visible := func(e stored) bool { return e.ev.TS < r.T && (mode != ModeArrival || e.arrival <= r.T) }
	known := false
	for _, g := range s.cfg.EntityFeatures(f.Entity) {
		for _, e := range s.w.events[g.Source][r.key] {
			known = known || visible(e)
		}
	}
	if !known {
		return 0, false
	}
	var evs []aggregations.Event
	for _, e := range s.w.events[f.Source][r.key] {
		if mode == ModeArrival && e.arrival > r.T {
			continue
		}
		evs = append(evs, e.ev)
	}
	v, ok := aggtest.BruteForce(f.Aggregation, f.Window, evs, r.T)
	if !ok && f.Default != nil {
		return *f.Default, true
	}
	return v, ok
}

// check compares every feature cell of out with the brute force.
func (s *scenario) check(t *testing.T, out string, rows []spineRow, cols map[string]*config.Feature, mode Mode) int {
	t.Helper()
	tb := readTable(t, out)
	if len(tb.cells) != len(rows) {
		t.Fatalf("%d output rows, want %d", len(tb.cells), len(rows))
	}
	labelCol, keyCol := tb.col(t, "label"), tb.col(t, "user_id")
	n, bad := 0, 0
	for name, f := range cols {
		c := tb.col(t, name)
		for i, r := range rows {
			if tb.cells[i][labelCol] != strconv.Itoa(r.label) || tb.cells[i][keyCol] != r.key {
				t.Fatalf("row %d is label %s key %s, want label %d key %s: rows must keep the spine order",
					i, tb.cells[i][labelCol], tb.cells[i][keyCol], r.label, r.key)
			}
			want, ok := s.want(f, r, mode)
			n++
			var got float64
			if !tb.null[i][c] {
				var err error
				if got, err = strconv.ParseFloat(tb.cells[i][c], 64); err != nil {
					t.Fatal(err)
				}
			}
			if tb.null[i][c] == ok || (ok && !aggtest.Within(f.Aggregation, got, want)) {
				if bad++; bad <= 10 {
					t.Errorf("row %d (%s at %d) %s = %q (null %v), want %v (ok %v)", i, r.key, r.T, name, tb.cells[i][c], tb.null[i][c], want, ok)
				}
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d values differ from the brute force", bad, n)
	}
	return n
}

// TestBackfillMatchesBruteForce is the core check: every feature of every
// spine row equals the brute force over the produced events, for both
// point-in-time modes and every combination of CSV and Parquet spine and
// output, with rows on tile boundaries, rows exactly at event times
// (excluded) and arrivals (included in arrival mode), out-of-order, late and
// early events, invalid records, and entities absent from the stream.
func TestBackfillMatchesBruteForce(t *testing.T) {
	s := newScenario(t, 1)
	cols := map[string]*config.Feature{}
	var refs []string
	for _, ref := range []string{"txn_avg_30d@1", "txn_avg_30d", "txn_sum_1d", "txn_count_7d", "txn_min_7d", "txn_max_30d", "txn_last", "txn_count_life", "login_count_1h",
		"txn_var_1d", "txn_stddev_7d", "txn_var_samp_30d", "txn_stddev_samp_life", "txn_first", "txn_distinct_30d", "txn_p95_7d"} {
		f, err := s.cfg.Feature(ref)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
		cols[ref] = f
	}
	for _, tc := range []struct {
		name     string
		mode     Mode
		spine    string
		out      string
		defaults bool // no --features: every feature of the entity
	}{
		{"event mode csv to parquet", ModeEvent, "spine.csv", "train.parquet", false},
		{"event mode parquet to csv", ModeEvent, "spine.parquet", "train.csv", false},
		{"arrival mode parquet to parquet", ModeArrival, "spine.parquet", "train.parquet", false},
		{"arrival mode csv to csv", ModeArrival, "spine.csv", "train.csv", false},
		{"default features are the default versions", ModeEvent, "spine.csv", "train.csv", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			spine, out := filepath.Join(dir, tc.spine), filepath.Join(dir, tc.out)
			writeSpine(t, spine, s.rows)
			o := Options{Brokers: s.brokers, Config: s.cfg, Spine: spine, Out: out, Mode: tc.mode}
			want := cols
			if !tc.defaults {
				o.Features = refs
			} else {
				want = map[string]*config.Feature{}
				for name, f := range cols {
					if !strings.Contains(name, "@") {
						want[name] = f
					}
				}
			}
			m, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			n := s.check(t, out, s.rows, want, tc.mode)
			if tc.mode == ModeArrival {
				differ := 0
				for _, f := range want {
					for _, r := range s.rows {
						a, aok := s.want(f, r, ModeArrival)
						e, eok := s.want(f, r, ModeEvent)
						if a != e || aok != eok {
							differ++
						}
					}
				}
				if differ == 0 {
					t.Fatal("no value differs between the modes: the scenario does not test arrival mode")
				}
			}
			if tc.defaults {
				if got := readTable(t, out).columns; slices.Contains(got, "txn_avg_30d@1") || len(m.Features) != len(want) {
					t.Fatalf("default columns %v: want one column per feature name, at its default version", got)
				}
				if m.Features[0].Column != "txn_avg_30d" || m.Features[0].Version != 2 {
					t.Fatalf("default txn_avg_30d is version %d, want 2 (the newest)", m.Features[0].Version)
				}
			}
			if m.Events.Rejected[events.ReasonNotAvro] != 40 || m.Events.Rejected[events.ReasonFuture] != 40 {
				t.Fatalf("rejected %v, want 40 %s and 40 %s", m.Events.Rejected, events.ReasonNotAvro, events.ReasonFuture)
			}
			t.Logf("%d rows, %d values equal brute force; %d records replayed", len(s.rows), n, m.Events.Records)
		})
	}
}

// TestReplaysOnlyTheNeededOffsets checks the replay range: a source whose
// features all have finite windows starts at the first record stamped at or
// after earliest spine time - longest window - one hop - MaxFuture, so the
// old logins are not read, and every source ends at the end offsets listed
// at the start; a source with a lifetime feature starts at the log start.
func TestReplaysOnlyTheNeededOffsets(t *testing.T) {
	s := newScenario(t, 2)
	dir := t.TempDir()
	spine, out := filepath.Join(dir, "spine.csv"), filepath.Join(dir, "out.csv")
	writeSpine(t, spine, s.rows)
	m, err := Run(context.Background(), Options{Brokers: s.brokers, Config: s.cfg, Spine: spine, Out: out,
		Features: []string{"login_count_1h", "txn_count_life"}})
	if err != nil {
		t.Fatal(err)
	}
	minT := s.rows[0].T
	for _, r := range s.rows {
		minT = min(minT, r.T)
	}
	logins, _ := s.cfg.Source("logins")
	f, _ := s.cfg.Feature("login_count_1h")
	startMS := minT - f.Window.Size - f.Window.Hop - 24*aggregations.Hour
	var skipped int64
	for _, r := range m.Sources {
		recs := s.w.records[r.Topic][r.Partition]
		wantFrom := int64(0)
		if r.Topic == logins.Topic {
			wantFrom = int64(len(recs))
			for _, rec := range recs {
				if rec.Timestamp.UnixMilli() >= startMS {
					wantFrom = rec.Offset
					break
				}
			}
			skipped += r.From
		}
		if r.From != wantFrom || r.To != int64(len(recs)) {
			t.Errorf("%s/%d replayed [%d, %d), want [%d, %d)", r.Topic, r.Partition, r.From, r.To, wantFrom, len(recs))
		}
	}
	if skipped < int64(s.nOld) {
		t.Fatalf("skipped %d login records, want at least the %d old ones", skipped, s.nOld)
	}
	s.check(t, out, s.rows, map[string]*config.Feature{"login_count_1h": f, "txn_count_life": must(s.cfg.Feature("txn_count_life"))}, ModeEvent)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestManifest checks that the manifest identifies everything needed to
// reproduce and catalog the data set.
func TestManifest(t *testing.T) {
	s := newScenario(t, 3)
	dir := t.TempDir()
	spine, out := filepath.Join(dir, "spine.parquet"), filepath.Join(dir, "train.parquet")
	writeSpine(t, spine, s.rows)
	created := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	_, err := Run(context.Background(), Options{Brokers: s.brokers, Config: s.cfg, Spine: spine, Out: out,
		Features: []string{"txn_sum_1d", "txn_avg_30d@1"}, Mode: ModeArrival, Now: func() time.Time { return created }})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(ManifestPath(out))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(spine)
	sum := sha256.Sum256(b)
	lo, hi := s.rows[0].T, s.rows[0].T
	for _, r := range s.rows {
		lo, hi = min(lo, r.T), max(hi, r.T)
	}
	txns, _ := s.cfg.Source("transactions")
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"created_at", m.CreatedAt, created},
		{"point_in_time", m.PointInTime, ModeArrival},
		{"entity", m.Entity + "/" + m.KeyColumn, "user/user_id"},
		{"spine sha256", m.Spine.SHA256, hex.EncodeToString(sum[:])},
		{"spine rows", m.Spine.Rows, len(s.rows)},
		{"output rows", m.Output.Rows, len(s.rows)},
		{"time range", [2]int64{m.TimeRange.MinMS, m.TimeRange.MaxMS}, [2]int64{lo, hi}},
		{"feature columns", []string{m.Features[0].Column, m.Features[1].Column}, []string{"txn_sum_1d", "txn_avg_30d@1"}},
		{"feature hashes", []string{m.Features[0].Hash, m.Features[1].Hash},
			[]string{must(s.cfg.Feature("txn_sum_1d")).Hash, must(s.cfg.Feature("txn_avg_30d@1")).Hash}},
		{"feature versions", []int{m.Features[0].Version, m.Features[1].Version}, []int{1, 1}},
		{"sources are the one topic needed", len(m.Sources) > 0 && m.Sources[0].Topic == txns.Topic && m.Sources[len(m.Sources)-1].Topic == txns.Topic, true},
	} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("manifest %s = %v, want %v", c.what, c.got, c.want)
		}
	}
	var total int64
	for _, r := range m.Sources {
		total += int64(len(s.w.records[r.Topic][r.Partition]))
		if r.To != int64(len(s.w.records[r.Topic][r.Partition])) {
			t.Errorf("%s/%d replayed to %d, want the end offset %d", r.Topic, r.Partition, r.To, len(s.w.records[r.Topic][r.Partition]))
		}
	}
	if m.Events.Records == 0 || m.Events.Records > total {
		t.Errorf("manifest counts %d records replayed of %d in the topic", m.Events.Records, total)
	}
	// Each feature's statistics (the training baseline) are those of its
	// column in the output, nulls included.
	tb := readTable(t, out)
	for _, f := range m.Features {
		col := slices.Index(tb.columns, f.Column)
		want := monitor.NewStats()
		for i, row := range tb.cells {
			if tb.null[i][col] {
				want.AddNull()
				continue
			}
			v, err := strconv.ParseFloat(row[col], 64)
			if err != nil {
				t.Fatal(err)
			}
			want.AddValue(v)
		}
		if f.Statistics == nil {
			t.Fatalf("%s: no statistics in the manifest", f.Column)
		}
		got, w := f.Statistics.Summary(), want.Summary()
		if got.Count != int64(len(s.rows)) || got.Count != w.Count || got.Nulls != w.Nulls || fmt.Sprint(got.Quantiles) != fmt.Sprint(w.Quantiles) ||
			(w.Mean != nil) != (got.Mean != nil) || w.Mean != nil && (math.Abs(*got.Mean-*w.Mean) > 1e-9*math.Abs(*w.Mean) || *got.Min != *w.Min || *got.Max != *w.Max) {
			t.Errorf("%s: manifest statistics %+v, the output's %+v", f.Column, got, w)
		}
	}
	// The catalog's dataset record carries the same statistics, by feature
	// id: the baseline a worker finds without the manifest file.
	view, err := registry.Load(context.Background(), kafka.ConnOf(s.brokers, s.cfg), s.cfg.Kafka.RegistryTopic, nil)
	if err != nil {
		t.Fatal(err)
	}
	ds, ok := view.Dataset(m.Dataset)
	if !ok {
		t.Fatalf("dataset %s is not in the catalog", m.Dataset)
	}
	for _, f := range m.Features {
		id := fmt.Sprintf("%s@%d", f.Name, f.Version)
		got := ds.Statistics[id]
		if got == nil {
			t.Errorf("catalog dataset %s: no statistics of %s (has %v)", ds.ID(), id, slices.Sorted(maps.Keys(ds.Statistics)))
			continue
		}
		if g, w := must(json.Marshal(got)), must(json.Marshal(f.Statistics)); string(g) != string(w) {
			t.Errorf("catalog dataset %s, %s: statistics %s, the manifest's %s", ds.ID(), id, g, w)
		}
		if best, ok := view.NewestDatasetWith(id); !ok || best.ID() != ds.ID() {
			t.Errorf("newest dataset with %s: %s (found %v), want %s", id, best.ID(), ok, ds.ID())
		}
	}
}

// TestBadSpineRows checks that rows with a missing key or an unparseable
// timestamp fail the job before anything is written, listing their row
// numbers, unless SkipBadRows drops (and counts) them.
func TestBadSpineRows(t *testing.T) {
	s := newScenario(t, 4)
	good := s.rows[:20]
	dir := t.TempDir()
	spine := filepath.Join(dir, "spine.csv")
	writeSpine(t, spine, good)
	b, err := os.ReadFile(spine)
	if err != nil {
		t.Fatal(err)
	}
	// Rows 3 (bad timestamp) and 6 (no key) are broken.
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	lines = slices.Insert(lines, 3, "77,user-01,abc,x")
	lines = slices.Insert(lines, 6, "78,,1700000000000,y")
	if err := os.WriteFile(spine, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := must(s.cfg.Feature("txn_count_7d"))
	for _, tc := range []struct {
		name string
		skip bool
	}{{"bad rows fail the job and write nothing", false}, {"skip-bad-rows drops and counts them", true}} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.parquet")
			m, err := Run(context.Background(), Options{Brokers: s.brokers, Config: s.cfg, Spine: spine, Out: out,
				Features: []string{"txn_count_7d"}, SkipBadRows: tc.skip})
			if !tc.skip {
				var bre *BadRowsError
				if !errors.As(err, &bre) {
					t.Fatalf("err = %v, want a *BadRowsError", err)
				}
				if len(bre.Rows) != 2 || bre.Rows[0].Row != 3 || bre.Rows[1].Row != 6 {
					t.Fatalf("bad rows %+v, want rows 3 and 6", bre.Rows)
				}
				for _, want := range []string{`spine.csv row 3: timestamp "abc": want RFC 3339 or epoch milliseconds`, `spine.csv row 6: key "user_id" is empty`} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %q", err, want)
					}
				}
				for _, p := range []string{out, ManifestPath(out)} {
					if _, err := os.Stat(p); !os.IsNotExist(err) {
						t.Errorf("%s exists after a failed run", p)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Spine.Rows != 22 || m.Spine.BadRows != 2 || m.Output.Rows != 20 || len(m.Spine.BadExamples) != 2 {
				t.Fatalf("manifest spine %+v output %+v: want 22 rows, 2 bad, 20 written", m.Spine, m.Output)
			}
			s.check(t, out, good, map[string]*config.Feature{"txn_count_7d": f}, ModeEvent)
		})
	}
}

// TestParquetSpineKeepsItsTypes checks that the output of a Parquet spine
// keeps its columns in order with their types, and appends the features as
// optional doubles.
func TestParquetSpineKeepsItsTypes(t *testing.T) {
	s := newScenario(t, 5)
	dir := t.TempDir()
	spine, out := filepath.Join(dir, "spine.parquet"), filepath.Join(dir, "out.parquet")
	writeSpine(t, spine, s.rows[:30])
	if _, err := Run(context.Background(), Options{Brokers: s.brokers, Config: s.cfg, Spine: spine, Out: out,
		Features: []string{"txn_max_30d", "txn_avg_30d@1"}}); err != nil {
		t.Fatal(err)
	}
	tb := readTable(t, out)
	fields := tb.pschema.Fields()
	var got []string
	for _, f := range fields {
		opt := ""
		if f.Optional() {
			opt = "optional "
		}
		got = append(got, f.Name()+": "+opt+f.Type().String())
	}
	want := []string{"label: INT(32,true)", "user_id: STRING", "timestamp: TIMESTAMP(isAdjustedToUTC=true,unit=MILLIS)",
		"note: optional STRING", "txn_max_30d: optional DOUBLE", "txn_avg_30d@1: optional DOUBLE"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("output schema\n %v\nwant\n %v", got, want)
	}
	noteCol := tb.col(t, "note")
	for i := range tb.cells {
		if tb.null[i][noteCol] != (i%3 == 0) {
			t.Fatalf("row %d: note null = %v; nulls of pass-through columns must stay null", i, tb.null[i][noteCol])
		}
	}
	s.check(t, out, s.rows[:30], map[string]*config.Feature{"txn_max_30d": must(s.cfg.Feature("txn_max_30d")), "txn_avg_30d@1": must(s.cfg.Feature("txn_avg_30d@1"))}, ModeEvent)
}
