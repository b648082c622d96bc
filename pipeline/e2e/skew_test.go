package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/skew"
)

// servedAt identifies one served key: the lookup log's (key, at).
type servedAt struct {
	key string
	at  int64
}

// exactLookup looks up every feature of keys until every value equals the
// brute force over the produced events as of the answer's as_of (the lookup
// service has caught up with everything produced), and returns that as_of
// (epoch ms): the lookup-log time of the caught-up answer. The earlier,
// stale answers are logged too; callers select the caught-up ones with
// skew.Options.Keep.
// Every answered request (HTTP 200, each key logged) is counted in *calls.
func exactLookup(t *testing.T, ls *lookupServer, cfg *config.File, p *produced, keys []string, timeout time.Duration, calls *int) int64 {
	t.Helper()
	want := len(keys) * len(cfg.Features)
	deadline := time.Now().Add(timeout)
	for {
		resp, bad := lookupAll(t, ls, cfg, keys, byName)
		n := 0
		if resp != nil {
			*calls++
			bad, n = compareAnswer(resp, keys, cfg.Features, byName, p)
		}
		if len(bad) == 0 && n == want && ls.ready() {
			return resp.AsOf.UnixMilli()
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the lookup service has not caught up: %d of %d values compared, %d differ, e.g. %v", timeout, n, want, len(bad), bad[:min(len(bad), 5)])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitLogged waits until topic holds at least n lookup-log entries.
func waitLogged(t *testing.T, cl *kgo.Client, topic string, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		have, err := entriesLogged(cl, topic)
		if err == nil && have >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookup log %s holds %d entries after %s, want %d (one per key looked up; err %v)", topic, have, timeout, n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// entriesLogged counts the lookup-log entries topic holds (records hold
// one or more).
func entriesLogged(cl *kgo.Client, topic string) (int64, error) {
	var n int64
	err := kafka.ReadToEnd(context.Background(), cl, topic, func(r *kgo.Record) error {
		for range lookuplog.Entries(r.Value) {
			n++
		}
		return nil
	})
	return n, err
}

// keepServed selects the lookup-log entries of the caught-up lookups.
func keepServed(set map[servedAt]bool) func(*lookuplog.Entry) bool {
	return func(e *lookuplog.Entry) bool { return set[servedAt{e.Key, e.At}] }
}

func record(set map[servedAt]bool, keys []string, at int64) {
	for _, k := range keys {
		set[servedAt{k, at}] = true
	}
}

func union(sets ...map[servedAt]bool) map[servedAt]bool {
	out := map[servedAt]bool{}
	for _, s := range sets {
		for k := range s {
			out[k] = true
		}
	}
	return out
}

// eventsBetween returns n events of keys users with event times spread over
// [from, to), sorted by event time.
func eventsBetween(rng *rand.Rand, n, users int, from, to time.Time) []event {
	out := make([]event, n)
	for i := range out {
		src := "transactions"
		if rng.IntN(5) == 0 {
			src = "logins"
		}
		out[i] = event{source: src, key: fmt.Sprintf("user-%03d", rng.IntN(users)),
			ts:     from.UnixMilli() + rng.Int64N(to.Sub(from).Milliseconds()),
			amount: float64(rng.IntN(1_000_000)) / 100}
	}
	slices.SortFunc(out, func(a, b event) int { return int(a.ts - b.ts) })
	return out
}

// TestSkewOfServedLookups streams events through a worker and the lookup
// service, looks every key up after each batch (once the lookup service has
// caught up), and replays the lookup log through the backfill engine with
// pipeline/skew:
//
//   - events in event-time order (each batch's event times after the previous
//     lookup): both point-in-time modes reproduce every served value;
//   - late events (event times hours to days before their arrival, after
//     lookups that were as of later times): arrival mode still reproduces
//     every served value, event mode does not, except for the last lookups,
//     which had seen every event.
//
// Determinism: lookups are only kept once the service has caught up with
// everything produced (so nothing that arrived before a lookup was still
// unpublished), records get their CreateTime from the producer's clock when
// produced, after the previous lookup's as_of (a millisecond pause makes sure
// it is later, not equal), and every event time is before the produce call.
func TestSkewOfServedLookups(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w1"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	rng := rand.New(rand.NewPCG(21, 4))
	const users = 40
	keys := allKeys(users)
	p := newProduced()
	nFeatures := int64(len(cfg.Features))
	const timeout = 60 * time.Second
	calls := 0 // lookup requests, each logging every key

	run := func(mode backfill.Mode, keep map[servedAt]bool) *skew.Report {
		t.Helper()
		// The lookup service logs asynchronously: wait for every entry.
		waitLogged(t, cl, cfg.Kafka.LookupLogTopic, int64(calls*len(keys)), timeout)
		rep, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Mode: mode, Keep: keepServed(keep), Examples: 3})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		rep.WriteText(&b)
		t.Logf("%s mode:\n%s", mode, b.String())
		if rep.Entries != int64(len(keep)) || rep.Compared != rep.Entries*nFeatures {
			t.Fatalf("%s mode: %d entries and %d values compared, want %d and %d: is the lookup service logging every served key?",
				mode, rep.Entries, rep.Compared, len(keep), int64(len(keep))*nFeatures)
		}
		return rep
	}

	// In event-time order: first 10 days of history, then three batches in
	// real time, each with event times after the previous lookup's as_of,
	// so no event is late for any lookup.
	inOrder := map[servedAt]bool{}
	from := time.Now().Add(-10 * 24 * time.Hour)
	for b := 0; b < 4; b++ {
		if b > 0 {
			time.Sleep(300 * time.Millisecond) // room for event times after the last as_of
		}
		to := time.Now().Add(-time.Millisecond)
		produceEvents(t, ctx, cl, cfg, eventsBetween(rng, 400, users, from, to), p)
		at := exactLookup(t, ls, cfg, p, keys, timeout, &calls)
		record(inOrder, keys, at)
		from = time.UnixMilli(at)
		time.Sleep(2 * time.Millisecond)
	}
	for _, mode := range []backfill.Mode{backfill.ModeEvent, backfill.ModeArrival} {
		if rep := run(mode, inOrder); rep.Mismatches != 0 {
			t.Fatalf("events in event-time order, %s mode: %d mismatches, want 0", mode, rep.Mismatches)
		}
	}

	// Late events: each batch has event times up to two days before it is
	// produced, before the as_of of earlier lookups.
	late := map[servedAt]bool{}
	last := map[servedAt]bool{}
	for b := 0; b < 3; b++ {
		now := time.Now()
		produceEvents(t, ctx, cl, cfg, eventsBetween(rng, 300, users, now.Add(-48*time.Hour), now.Add(-time.Millisecond)), p)
		at := exactLookup(t, ls, cfg, p, keys, timeout, &calls)
		record(late, keys, at)
		clear(last)
		record(last, keys, at)
		time.Sleep(2 * time.Millisecond)
	}
	all := union(inOrder, late)
	if rep := run(backfill.ModeArrival, all); rep.Mismatches != 0 {
		t.Fatalf("late events, arrival mode: %d mismatches, want 0 (arrival mode reproduces what was served)", rep.Mismatches)
	}
	ev := run(backfill.ModeEvent, all)
	if ev.Mismatches == 0 {
		t.Fatal("late events, event mode: 0 mismatches; the late events must change the values of the earlier lookups")
	}
	if c := ev.Feature("txn_count_life@1"); c == nil || c.Mismatches == 0 {
		t.Fatalf("late events, event mode: the lifetime count must differ for keys with late events: %+v", c)
	}
	if rep := run(backfill.ModeEvent, last); rep.Mismatches != 0 {
		t.Fatalf("event mode, last lookups (after every event): %d mismatches, want 0", rep.Mismatches)
	}
}
