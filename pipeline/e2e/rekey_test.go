package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/skew"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// rekeyFeatureFile: transactions are keyed by user; a merchant entity and
// a composite (user, merchant) entity are fed from them through repartition
// topics (unique to the test, like every topic here).
var rekeyFeatureFile = testkit.KafkaSection(4) + `  repartition_prefix: repartition-{{ID}}.
entities:
  - {name: user, key: user_id}
  - {name: merchant, key: merchant_id}
  - {name: user_merchant, keys: [user_id, merchant_id]}
sources:
  - {name: transactions, topic: transactions-{{ID}}, schema: transaction.avsc, event_time: ts, entity: user}
features:
  - {name: user_count_life, version: 1, entity: user, source: transactions, aggregation: count, window: lifetime, owner: t, description: d}
  - {name: pair_count_life, version: 1, entity: user_merchant, source: transactions, aggregation: count, window: lifetime, owner: t, description: d}
  - {name: pair_sum_7d, version: 1, entity: user_merchant, source: transactions, aggregation: sum, field: amount, window: 7d, owner: t, description: d}
  - {name: pair_last, version: 1, entity: user_merchant, source: transactions, aggregation: last, field: amount, window: lifetime, owner: t, description: d}
  - {name: merchant_max_30d, version: 1, entity: merchant, source: transactions, aggregation: max, field: amount, window: 30d, hop: 12h, owner: t, description: d}
  - {name: merchant_avg_1d, version: 1, entity: merchant, source: transactions, aggregation: avg, field: amount, window: 1d, owner: t, description: d, where: "amount > 1000.0"}
`

// rekeyEvent is one generated transaction.
type rekeyEvent struct {
	user, merchant string
	ts             int64
	amount         float64
}

// rekeyed remembers every produced transaction by entity and entity key
// (keys.EntityKey, as every read path builds it), with its source record's
// order as the tie-breaking sequence: the brute force of every entity.
type rekeyed struct {
	mu     sync.Mutex
	events map[string]map[string][]aggregations.Event // entity -> key -> events
	users  map[string]bool
	merch  map[string]bool
	pairs  map[[2]string]bool
	total  int
}

func newRekeyed() *rekeyed {
	return &rekeyed{events: map[string]map[string][]aggregations.Event{"user": {}, "merchant": {}, "user_merchant": {}},
		users: map[string]bool{}, merch: map[string]bool{}, pairs: map[[2]string]bool{}}
}

func genRekeyEvents(rng *rand.Rand, n, users, merchants int, span time.Duration, now time.Time) []rekeyEvent {
	out := make([]rekeyEvent, n)
	for i := range out {
		age := time.Duration(rng.Int64N(int64(span)))
		if rng.IntN(4) == 0 {
			age = time.Duration(rng.Int64N(int64(3 * time.Hour)))
		}
		out[i] = rekeyEvent{
			user:     fmt.Sprintf("user-%03d", rng.IntN(users)),
			merchant: fmt.Sprintf("m-%02d", rng.IntN(merchants)),
			ts:       now.Add(-age - time.Second).UnixMilli(),
			amount:   float64(rng.IntN(200_000)) / 100,
		}
	}
	return out
}

// produceRekey sends events to the source topic (keyed by user, with the
// producers' encoder) and records them under every entity.
func produceRekey(t testing.TB, ctx context.Context, cl *kgo.Client, cfg *config.File, evs []rekeyEvent, into *rekeyed) {
	t.Helper()
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		native := testkit.Event("transactions", e.user, e.ts, e.amount)
		native["merchant_id"] = e.merchant
		if recs[i], err = enc.Record(native); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	into.mu.Lock()
	defer into.mu.Unlock()
	for i, e := range evs {
		ev := aggregations.Event{TS: e.ts, Seq: aggregations.Seq(recs[i].Partition, recs[i].Offset), Value: e.amount}
		for ent, key := range map[string]string{"user": e.user, "merchant": e.merchant, "user_merchant": keys.EntityKey([]string{e.user, e.merchant})} {
			into.events[ent][key] = append(into.events[ent][key], ev)
		}
		into.users[e.user], into.merch[e.merchant], into.pairs[[2]string{e.user, e.merchant}] = true, true, true
		into.total++
	}
}

// checkRekeyed looks up every feature of every entity for every key seen
// (plus one unknown key each; pairs as JSON objects) and compares each value
// and status with the brute force over the produced events, as of the
// answer's time. It returns the mismatches and the number of values
// compared.
func checkRekeyed(t testing.TB, url string, cfg *config.File, p *rekeyed) ([]string, int) {
	t.Helper()
	p.mu.Lock()
	type req struct {
		entity string
		keys   []any // as sent
		ekeys  []string
	}
	var reqs []req
	var us, ms []string
	for u := range p.users {
		us = append(us, u)
	}
	for m := range p.merch {
		ms = append(ms, m)
	}
	sort.Strings(us)
	sort.Strings(ms)
	us, ms = append(us, "user-none"), append(ms, "m-none")
	r := req{entity: "user"}
	for _, u := range us {
		r.keys, r.ekeys = append(r.keys, u), append(r.ekeys, u)
	}
	reqs = append(reqs, r)
	r = req{entity: "merchant"}
	for _, m := range ms {
		r.keys, r.ekeys = append(r.keys, m), append(r.ekeys, m)
	}
	reqs = append(reqs, r)
	var pairs [][2]string
	for pr := range p.pairs {
		pairs = append(pairs, pr)
	}
	p.mu.Unlock()
	sort.Slice(pairs, func(i, j int) bool { return pairs[i][0]+"\x00"+pairs[i][1] < pairs[j][0]+"\x00"+pairs[j][1] })
	pairs = append(pairs, [2]string{"user-000", "m-none"})
	for i := 0; i < len(pairs); i += 200 {
		r := req{entity: "user_merchant"}
		for _, pr := range pairs[i:min(i+200, len(pairs))] {
			r.keys = append(r.keys, map[string]string{"user_id": pr[0], "merchant_id": pr[1]})
			r.ekeys = append(r.ekeys, keys.EntityKey(pr[:]))
		}
		reqs = append(reqs, r)
	}
	var bad []string
	n := 0
	for _, r := range reqs {
		feats := cfg.EntityFeatures(r.entity)
		if len(feats) == 0 {
			continue
		}
		var names []string
		for _, f := range feats {
			names = append(names, f.ID)
		}
		body := map[string]any{"entity": r.entity, "keys": r.keys, "features": names}
		var resp lookup.LookupResponse
		if code := postJSON(t, url+"/v1/lookup", body, &resp); code != http.StatusOK {
			return []string{fmt.Sprintf("%s: HTTP %d", r.entity, code)}, n
		}
		if len(resp.Results) != len(r.ekeys) {
			return []string{fmt.Sprintf("%s: %d results for %d keys", r.entity, len(resp.Results), len(r.ekeys))}, n
		}
		T := resp.AsOf.UnixMilli()
		p.mu.Lock()
		for i, res := range resp.Results {
			key := r.ekeys[i]
			if res.Key != key {
				bad = append(bad, fmt.Sprintf("%s result %d is for %q, want %q", r.entity, i, res.Key, key))
				continue
			}
			evs := p.events[r.entity][key]
			known := false
			for _, e := range evs {
				known = known || e.TS < T
			}
			for _, f := range feats {
				fv := res.Features[f.ID]
				var counted []aggregations.Event
				for _, e := range evs {
					if f.Where == "" || e.Value > 1000 {
						counted = append(counted, e)
					}
				}
				want, ok := aggtest.BruteForce(f.Aggregation, f.Window, counted, T)
				status := lookup.StatusNotFound
				if known {
					status = lookup.StatusEmptyWindow
					if c, _ := aggtest.BruteForce(aggregations.Count, f.Window, counted, T); c > 0 {
						status = lookup.StatusPresent
					}
				} else {
					ok = false
				}
				n++
				got := fv.Value
				if (got != nil) != ok || (ok && !aggtest.Close(*got, want)) || fv.Status != status {
					g := "null"
					if got != nil {
						g = fmt.Sprint(*got)
					}
					bad = append(bad, fmt.Sprintf("%s %s %s: got %s %s, want %v (ok %v) %s", r.entity, key, f.ID, g, fv.Status, want, ok, status))
				}
			}
		}
		p.mu.Unlock()
	}
	return bad, n
}

// waitRekeyedExact polls until every value equals the brute force.
func waitRekeyedExact(t testing.TB, url string, cfg *config.File, p *rekeyed, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		bad, n := checkRekeyed(t, url, cfg, p)
		if len(bad) == 0 {
			return n
		}
		if time.Now().After(deadline) {
			if len(bad) > 10 {
				bad = bad[:10]
			}
			b, _ := json.MarshalIndent(bad, "", "  ")
			t.Fatalf("after %s, values still differ from the brute force (%d compared), e.g.:\n%s", timeout, n, b)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestRekeyedKill9DuringIngestion kills the worker process with SIGKILL at
// random moments while transactions stream in: it produces re-keyed copies
// and applies them, so a kill can fall between producing a copy and
// committing its source offset (the copy is produced again: a duplicate
// the high-water marks must skip) or between applying a repartition record
// and committing. Every value of the user, merchant and (user, merchant)
// entities must equal the brute force: nothing lost, nothing twice.
func TestRekeyedKill9DuringIngestion(t *testing.T) {
	if testing.Short() {
		t.Skip("long: kills and restarts a worker process many times")
	}
	k, cfg, cl := setup(t, rekeyFeatureFile)
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	w := startProc(t, "worker", "worker", "--brokers", k.Brokers[0], "--config", cfg.Path,
		"--data", filepath.Join(dir, "worker"), "--metrics", "", "--log-level", "warn",
		"--instance-id", "rekey-crash-worker", "--session-timeout", "6s")
	const users, merchants, total = 150, 12, 60_000
	rng := rand.New(rand.NewPCG(31, 32))
	p := newRekeyed()
	var streaming atomic.Bool
	streaming.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sent := 0; sent < total; sent += 1500 {
			produceRekey(t, ctx, cl, cfg, genRekeyEvents(rng, 1500, users, merchants, 40*24*time.Hour, time.Now()), p)
			time.Sleep(100 * time.Millisecond)
		}
		streaming.Store(false)
	}()
	kills := 0
	krng := rand.New(rand.NewPCG(33, 34))
	for streaming.Load() || kills < 8 {
		time.Sleep(time.Duration(300+krng.IntN(1500)) * time.Millisecond)
		if err := w.exited(); err != nil {
			t.Fatal(err)
		}
		w.kill()
		kills++
		time.Sleep(time.Duration(krng.IntN(300)) * time.Millisecond)
		w.restart()
	}
	<-done
	n := waitRekeyedExact(t, ls.url, cfg, p, 3*time.Minute)
	src, reps := recordsWritten(t, cl, cfg.Sources[0].Topic), int64(0)
	for _, r := range cfg.Repartitions() {
		reps += recordsWritten(t, cl, r.Topic)
	}
	if reps < 2*src {
		t.Fatalf("%d records in the repartition topics for %d source records: some were never re-keyed", reps, src)
	}
	t.Logf("survived %d kill -9 of the worker during %d events; %d values of 3 entities equal brute force; repartition topics hold %d records for 2 × %d (%d re-produced after kills, skipped as duplicates)",
		kills, p.total, n, reps, src, reps-2*src)
}

// TestRekeyedRebalancesUnderLoad starts and stops three in-process workers
// in turn while transactions stream in: source and repartition partitions
// move between workers (each with its own store) many times.
func TestRekeyedRebalancesUnderLoad(t *testing.T) {
	k, cfg, cl := setup(t, rekeyFeatureFile)
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	rng := rand.New(rand.NewPCG(35, 36))
	p := newRekeyed()
	stops := map[string]func(){}
	start := func(name string) { stops[name] = runWorker(t, k.Brokers, cfg, filepath.Join(dir, name)) }
	stop := func(name string) { stops[name]() }
	schedule := []func(){
		func() { start("w1") }, func() { start("w2") }, func() { start("w3") },
		func() { stop("w1") }, func() { stop("w2") }, func() { start("w1") },
		func() { start("w2") }, func() { stop("w3") }, func() { stop("w1") },
		func() { start("w3") }, func() { stop("w2") }, func() { start("w1") },
	}
	for _, step := range schedule {
		produceRekey(t, ctx, cl, cfg, genRekeyEvents(rng, 2000, 100, 10, 40*24*time.Hour, time.Now()), p)
		step()
		time.Sleep(300 * time.Millisecond)
	}
	n := waitRekeyedExact(t, ls.url, cfg, p, 3*time.Minute)
	t.Logf("%d worker starts/stops during %d events; %d values of 3 entities equal brute force", len(schedule), p.total, n)
}

// TestRekeyedZombieCopiesAreSkipped writes, beside the worker, copies of
// re-keyed records into the repartition topics exactly as a zombie worker
// (one that lost the source partitions but still flushes) would: the same
// key, value and origin headers. Some land before the worker's own copies,
// some long after their records were applied. Each source record must
// count exactly once: deterministic where a kill -9 only sometimes falls
// between producing a copy and committing its source offset.
func TestRekeyedZombieCopiesAreSkipped(t *testing.T) {
	k, cfg, cl := setup(t, rekeyFeatureFile)
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	rng := rand.New(rand.NewPCG(37, 38))
	p := newRekeyed()
	var sent []*kgo.Record
	var sentEvents []rekeyEvent
	produceAndKeep := func(evs []rekeyEvent) {
		enc, err := produce.NewEncoder(cfg, "transactions")
		if err != nil {
			t.Fatal(err)
		}
		before := len(sent)
		for _, e := range evs {
			native := testkit.Event("transactions", e.user, e.ts, e.amount)
			native["merchant_id"] = e.merchant
			r, err := enc.Record(native)
			if err != nil {
				t.Fatal(err)
			}
			sent = append(sent, r)
		}
		if err := cl.ProduceSync(ctx, sent[before:]...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		sentEvents = append(sentEvents, evs...)
		p.mu.Lock()
		for i, e := range evs {
			r := sent[before+i]
			ev := aggregations.Event{TS: e.ts, Seq: aggregations.Seq(r.Partition, r.Offset), Value: e.amount}
			for ent, key := range map[string]string{"user": e.user, "merchant": e.merchant, "user_merchant": keys.EntityKey([]string{e.user, e.merchant})} {
				p.events[ent][key] = append(p.events[ent][key], ev)
			}
			p.users[e.user], p.merch[e.merchant], p.pairs[[2]string{e.user, e.merchant}] = true, true, true
			p.total++
		}
		p.mu.Unlock()
	}
	// zombieCopies re-keys, per source partition, the records of a
	// contiguous run of its offsets from a start chosen by pick (its
	// offsets in order) to its last record sent so far, in order: what a
	// writer that started at a committed offset produces.
	zombieCopies := func(pick func(offs []int64) int) int {
		byPart := map[int32][]int{} // partition -> indexes into sent, in offset order
		for i, r := range sent {
			byPart[r.Partition] = append(byPart[r.Partition], i)
		}
		var out []*kgo.Record
		for _, idx := range byPart {
			sort.Slice(idx, func(a, b int) bool { return sent[idx[a]].Offset < sent[idx[b]].Offset })
			offs := make([]int64, len(idx))
			for j, i := range idx {
				offs[j] = sent[i].Offset
			}
			from := pick(offs)
			to := from + rng.IntN(len(idx)-from+1)
			for _, i := range idx[from:to] {
				r, e := sent[i], sentEvents[i]
				for _, rep := range cfg.Repartitions() {
					key := e.merchant
					if rep.Entity.Name == "user_merchant" {
						key = keys.EntityKey([]string{e.user, e.merchant})
					}
					out = append(out, &kgo.Record{Topic: rep.Topic, Key: []byte(key), Value: r.Value, Timestamp: r.Timestamp,
						Headers: []kgo.RecordHeader{
							{Key: worker.HeaderSourcePartition, Value: []byte(fmt.Sprint(r.Partition))},
							{Key: worker.HeaderSourceOffset, Value: []byte(fmt.Sprint(r.Offset))},
						}})
				}
			}
		}
		if err := cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		return len(out)
	}
	produceAndKeep(genRekeyEvents(rng, 3000, 80, 8, 40*24*time.Hour, time.Now()))
	// Before the worker's own copies: a writer that started at offset 0.
	early := zombieCopies(func([]int64) int { return 0 })
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w1"))
	waitRekeyedExact(t, ls.url, cfg, p, 2*time.Minute)
	// Long after their records were applied: from anywhere.
	late := zombieCopies(func(offs []int64) int { return rng.IntN(len(offs)) })
	produceAndKeep(genRekeyEvents(rng, 1000, 80, 8, 40*24*time.Hour, time.Now()))
	n := waitRekeyedExact(t, ls.url, cfg, p, 2*time.Minute)
	t.Logf("%d zombie copies before and %d after the worker's own; %d values of 3 entities equal brute force", early, late, n)
}

// TestRekeyedBackfill runs backfills of the composite (user, merchant) and
// the merchant entity, whose spines carry the key fields as columns: the
// source is replayed and re-keyed in memory with the workers' key-building
// code, and every value as of every row's timestamp equals the brute force,
// which the online values equal too (checked first).
func TestRekeyedBackfill(t *testing.T) {
	k, cfg, cl := setup(t, rekeyFeatureFile)
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w1"))
	rng := rand.New(rand.NewPCG(39, 40))
	p := newRekeyed()
	now := time.Now()
	produceRekey(t, ctx, cl, cfg, genRekeyEvents(rng, 4000, 40, 6, 40*24*time.Hour, now), p)
	waitRekeyedExact(t, ls.url, cfg, p, 2*time.Minute)

	// skew recomputes served values of every entity, re-keyed ones too,
	// and finds them equal: one more exact round of lookups, once the log
	// holds every earlier one.
	logged := func() int64 {
		n, err := entriesLogged(cl, cfg.Kafka.LookupLogTopic)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for prev := int64(-1); ; time.Sleep(time.Second) {
		if n := logged(); n == prev {
			break
		} else {
			prev = n
		}
	}
	before, after := logged(), time.Now().UnixMilli()
	if bad, _ := checkRekeyed(t, ls.url, cfg, p); len(bad) > 0 {
		t.Fatalf("lookups no longer exact: %v", bad[0])
	}
	p.mu.Lock()
	served := int64(len(p.users) + len(p.merch) + len(p.pairs) + 3)
	p.mu.Unlock()
	waitLogged(t, cl, cfg.Kafka.LookupLogTopic, before+served, time.Minute)
	rep, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Mode: backfill.ModeArrival,
		Keep: func(e *lookuplog.Entry) bool { return e.At >= after }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != served || rep.Mismatches != 0 {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf("skew: %d entries (want %d), %d mismatches (want 0):\n%s", rep.Entries, served, rep.Mismatches, b.String())
	}
	for _, id := range []string{"pair_sum_7d@1", "pair_last@1", "merchant_max_30d@1"} {
		if c := rep.Feature(id); c == nil || c.Rows == 0 {
			t.Fatalf("skew compared no value of re-keyed %s: %+v", id, c)
		}
	}
	t.Logf("skew: %d served values of 3 entities recomputed, 0 mismatches", rep.Compared)

	type row struct {
		user, merchant string
		T              int64
	}
	for _, tc := range []struct {
		entity, header string
		key            func(r row) string
		line           func(r row) string
	}{
		{"user_merchant", "merchant_id,user_id,timestamp", func(r row) string { return keys.EntityKey([]string{r.user, r.merchant}) },
			func(r row) string { return fmt.Sprintf("%s,%s,%d", r.merchant, r.user, r.T) }},
		{"merchant", "merchant_id,timestamp", func(r row) string { return r.merchant },
			func(r row) string { return fmt.Sprintf("%s,%d", r.merchant, r.T) }},
	} {
		t.Run(tc.entity, func(t *testing.T) {
			var rows []row
			var spine strings.Builder
			spine.WriteString(tc.header + "\n")
			for i := range 500 {
				r := row{user: fmt.Sprintf("user-%03d", rng.IntN(42)), merchant: fmt.Sprintf("m-%02d", rng.IntN(7)),
					T: now.Add(-time.Duration(rng.Int64N(int64(45 * 24 * time.Hour)))).UnixMilli()}
				if i == 0 {
					r.T = now.Add(time.Minute).UnixMilli()
				}
				rows = append(rows, r)
				spine.WriteString(tc.line(r) + "\n")
			}
			spinePath := filepath.Join(dir, tc.entity+"-spine.csv")
			if err := os.WriteFile(spinePath, []byte(spine.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, tc.entity+".csv")
			m, err := backfill.Run(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Spine: spinePath, Out: out})
			if err != nil {
				t.Fatalf("backfill: %v", err)
			}
			if m.Entity != tc.entity {
				t.Fatalf("backfill chose entity %s, want %s", m.Entity, tc.entity)
			}
			tab := readCSV(t, out)
			if len(tab) != len(rows)+1 {
				t.Fatalf("%d lines, want %d", len(tab), len(rows)+1)
			}
			n := 0
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, f := range cfg.EntityFeatures(tc.entity) {
				c := colIndex(t, tab[0], f.Name)
				for i, r := range rows {
					var counted []aggregations.Event
					for _, e := range p.events[tc.entity][tc.key(r)] {
						if f.Where == "" || e.Value > 1000 {
							counted = append(counted, e)
						}
					}
					want, ok := aggtest.BruteForce(f.Aggregation, f.Window, counted, r.T)
					known := false
					for _, e := range p.events[tc.entity][tc.key(r)] {
						known = known || e.TS < r.T
					}
					ok = ok && known
					cell := tab[i+1][c]
					got, err := strconv.ParseFloat(cell, 64)
					n++
					if (cell != "") != ok || (ok && (err != nil || !aggtest.Close(got, want))) {
						t.Fatalf("%s %s as of %d: got %q, want %v (ok %v)", tc.key(r), f.ID, r.T, cell, want, ok)
					}
				}
			}
			t.Logf("%d backfilled values of %s equal the brute force", n, tc.entity)
		})
	}
}

// TestRekeyedEntityAddedToARunningSource adds the (user, merchant) entity
// to a feature file whose workers already ran (the source re-keyed to
// merchants only): the source partitions re-key their history to the new
// repartition topic before any live record, so the new features count
// every event, old ones included.
func TestRekeyedEntityAddedToARunningSource(t *testing.T) {
	var kept []string
	for _, line := range strings.Split(rekeyFeatureFile, "\n") {
		if !strings.Contains(line, "entity: user_merchant") {
			kept = append(kept, line)
		}
	}
	k, cfgA, cl := setup(t, strings.Join(kept, "\n"))
	if len(cfgA.Repartitions()) != 1 {
		t.Fatalf("first file re-keys to %d topics, want 1 (merchant)", len(cfgA.Repartitions()))
	}
	ctx := context.Background()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(41, 42))
	p := newRekeyed()
	lsA, stopA := runLookup(t, k.Brokers, cfgA, filepath.Join(dir, "viewA"))
	stopW := runWorker(t, k.Brokers, cfgA, filepath.Join(dir, "w1"))
	produceRekey(t, ctx, cl, cfgA, genRekeyEvents(rng, 3000, 60, 8, 40*24*time.Hour, time.Now()), p)
	waitRekeyedExact(t, lsA.url, cfgA, p, 2*time.Minute)
	stopW()
	stopA()

	cfgB := writeConfig(t, sameTopics(rekeyFeatureFile, cfgA))
	if len(cfgB.Repartitions()) != 2 {
		t.Fatalf("second file re-keys to %d topics, want 2", len(cfgB.Repartitions()))
	}
	lsB, _ := runLookup(t, k.Brokers, cfgB, filepath.Join(dir, "viewB"))
	runWorker(t, k.Brokers, cfgB, filepath.Join(dir, "w1")) // the same store
	produceRekey(t, ctx, cl, cfgB, genRekeyEvents(rng, 1500, 60, 8, 40*24*time.Hour, time.Now()), p)
	n := waitRekeyedExact(t, lsB.url, cfgB, p, 2*time.Minute)
	pairTopic := cfgB.Repartitions()[1].Topic
	if got, src := recordsWritten(t, cl, pairTopic), recordsWritten(t, cl, cfgB.Sources[0].Topic); got != src {
		t.Fatalf("%s holds %d records for %d source records: the history was not re-keyed exactly once", pairTopic, got, src)
	}
	t.Logf("(user, merchant) added after %d events: %d values of 3 entities equal brute force, history included", 3000, n)
}
