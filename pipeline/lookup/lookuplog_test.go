package lookup

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// logFixture is a fixture whose service runs against a kfake broker, so
// that its lookup log can be consumed.
func logFixture(t testing.TB, sample float64, opts ...func(*Options)) (*fixture, []string) {
	t.Helper()
	brokers := newTestCluster(t, 3).ListenAddrs()
	cfg := loadTestConfig(t)
	st := openTestStore(t)
	T := fixtureNow.UnixMilli()
	events := fixtureData(T)
	writeView(t, st, cfg, events, T)
	o := Options{Brokers: brokers, Config: cfg, Store: st, LookupLogSample: sample,
		Now: func() time.Time { return fixtureNow }}
	for _, f := range opts {
		f(&o)
	}
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, svc)
	waitReady(t, svc, 10*time.Second, "the service did not become ready")
	return &fixture{svc: svc, cfg: cfg, events: events, T: T, h: svc.Handler()}, brokers
}

// consumeLog reads the lookup-log topic until it has want entries or wait
// passes, and returns the decoded entries.
func consumeLog(t *testing.T, brokers []string, topic string, want int, wait time.Duration) (entries []*lookuplog.Entry) {
	t.Helper()
	eachLogRecord(t, brokers, topic, wait, func(r *kgo.Record) bool {
		for b := range lookuplog.Entries(r.Value) {
			e, err := lookuplog.Decode(b)
			if err != nil {
				t.Fatalf("record %s: %v", r.Value, err)
			}
			entries = append(entries, e)
		}
		return want >= 0 && len(entries) >= want
	})
	return entries
}

// eachLogRecord passes the lookup-log topic's records, from its start, to
// fn until fn returns true or wait passes.
func eachLogRecord(t *testing.T, brokers []string, topic string, wait time.Duration, fn func(*kgo.Record) (done bool)) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for done := false; !done; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !done {
				done = fn(r)
			}
		})
	}
}

func TestLookupLogRecordsWhatWasServed(t *testing.T) {
	fx, brokers := logFixture(t, 0) // default: every key
	type served struct {
		entity string
		values map[string]*float64 // feature id -> value
	}
	want := map[string]served{} // by key; the requests below ask each key once
	// POST /v1/lookup, with a feature named twice (name and name@version).
	rec := fx.do(t, "POST", "/v1/lookup", `{"entity":"user","keys":["u1","u2","u404"],"features":["txn_count_7d","txn_amount_avg","txn_amount_avg@2"]}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("lookup: %d %s", rec.Code, rec.Body)
	}
	var resp LookupResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Results {
		v := map[string]*float64{}
		for name, fv := range r.Features {
			f, _ := fx.cfg.Feature(name)
			v[f.ID] = fv.Value
		}
		want[r.Key] = served{"user", v}
	}
	// GET /v1/features: every feature, newest versions.
	rec = fx.do(t, "GET", "/v1/features/merchant/m1", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("entity route: %d %s", rec.Code, rec.Body)
	}
	resp = LookupResponse{}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	v := map[string]*float64{}
	for name, fv := range resp.Results[0].Features {
		f, _ := fx.cfg.Feature(name)
		v[f.ID] = fv.Value
	}
	want["m1"] = served{"merchant", v}
	// Feast.
	rec = fx.do(t, "POST", "/get-online-features", `{"features":["txn_count_7d"],"entities":{"user_id":[42]}}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("feast: %d %s", rec.Code, rec.Body)
	}
	var feast FeastResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &feast); err != nil {
		t.Fatal(err)
	}
	f, _ := fx.cfg.Feature("txn_count_7d")
	fv := feast.Results[1].Values[0].(float64)
	want["42"] = served{"user", map[string]*float64{f.ID: &fv}}

	entries := consumeLog(t, brokers, fx.cfg.Kafka.LookupLogTopic, len(want), 10*time.Second)
	if len(entries) != len(want) {
		t.Fatalf("%d lookup-log entries, want %d (one per served key)", len(entries), len(want))
	}
	for _, e := range entries {
		w, ok := want[e.Key]
		if !ok {
			t.Errorf("entry for key %q, which was not served", e.Key)
			continue
		}
		if e.Entity != w.entity || e.At != fx.T {
			t.Errorf("entry %+v, want entity %s, at %d", e, w.entity, fx.T)
		}
		if len(e.Features) != len(w.values) {
			t.Errorf("%s: features %v, want %v", e.Key, e.Features, w.values)
		}
		for id, wv := range w.values {
			gv, ok := e.Features[id]
			if !ok || (gv == nil) != (wv == nil) || (gv != nil && *gv != *wv) {
				t.Errorf("%s %s: logged %s, served %s", e.Key, id, fmtValue(gv), fmtValue(wv))
			}
		}
	}
	if got := counterValue(t, fx.svc, "sent"); got != float64(len(want)) {
		t.Errorf("lookup_log_records_total{result=sent} = %v, want %d", got, len(want))
	}
}

func TestLookupLogSampling(t *testing.T) {
	const perRequest, requests = 1000, 4
	keys := make([]string, perRequest)
	for i := range keys {
		keys[i] = fmt.Sprintf("%q", fmt.Sprintf("k%d", i))
	}
	body := `{"entity":"user","keys":[` + strings.Join(keys, ",") + `],"features":["txn_count_7d"]}`
	const draws = perRequest * requests
	for _, tc := range []struct {
		name     string
		sample   float64
		min, max int
	}{
		// Binomial(4000, 0.5): sd 32; ±200 is > 6 sd, so this does not flake.
		{"sampling 0.5 logs about half the keys", 0.5, draws/2 - 200, draws/2 + 200},
		{"NoLookupLog logs nothing", NoLookupLog, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx, brokers := logFixture(t, tc.sample)
			for range requests {
				if rec := fx.do(t, "POST", "/v1/lookup", body); rec.Code != http.StatusOK {
					t.Fatalf("lookup: %d %s", rec.Code, rec.Body)
				}
			}
			if tc.max == 0 {
				// Nothing is logged: read for a while to see nothing arrive.
				if entries := consumeLog(t, brokers, fx.cfg.Kafka.LookupLogTopic, -1, 2*time.Second); len(entries) != 0 {
					t.Errorf("%d of %d keys logged, want none", len(entries), draws)
				}
				return
			}
			// Every sampled entry produced and acknowledged, then read back:
			// not a fixed reading window, which a loaded machine outlasted.
			sent := flushLookupLog(t, fx.svc)
			entries := consumeLog(t, brokers, fx.cfg.Kafka.LookupLogTopic, sent, 30*time.Second)
			if got := len(entries); got != sent || got < tc.min || got > tc.max {
				t.Errorf("%d of %d keys logged (%d acknowledged), want %d..%d", got, draws, sent, tc.min, tc.max)
			}
		})
	}
}

// TestLookupLogBatchesEntries: the entries of many keys and requests share
// records, one entry per line and no record key, each record cut once it
// holds logBatchBytes; the metric counts entries, not records.
func TestLookupLogBatchesEntries(t *testing.T) {
	const requests, perRequest = 40, 50 // 2,000 entries of ~130 bytes: several records
	fx, brokers := logFixture(t, 0)
	keys := make([]string, perRequest)
	for i := range keys {
		keys[i] = fmt.Sprintf("%q", fmt.Sprintf("k%d", i))
	}
	body := `{"entity":"user","keys":[` + strings.Join(keys, ",") + `],"features":["txn_count_7d"]}`
	for range requests {
		if rec := fx.do(t, "POST", "/v1/lookup", body); rec.Code != http.StatusOK {
			t.Fatalf("lookup: %d %s", rec.Code, rec.Body)
		}
	}
	records, entries, largest := 0, 0, 0
	eachLogRecord(t, brokers, fx.cfg.Kafka.LookupLogTopic, 20*time.Second, func(r *kgo.Record) bool {
		records++
		largest = max(largest, len(r.Value))
		if r.Key != nil {
			t.Errorf("record key %q, want none", r.Key)
		}
		for b := range lookuplog.Entries(r.Value) {
			if _, err := lookuplog.Decode(b); err != nil {
				t.Fatalf("entry %s: %v", b, err)
			}
			entries++
		}
		return entries >= requests*perRequest
	})
	if entries != requests*perRequest {
		t.Fatalf("%d entries logged, want %d", entries, requests*perRequest)
	}
	if records < 2 || records > entries/100 {
		t.Errorf("%d records for %d entries: want them batched, several records (each cut at %d bytes)", records, entries, logBatchBytes)
	}
	if largest > logBatchBytes+1024 {
		t.Errorf("largest record %d bytes, want at most %d plus one entry", largest, logBatchBytes)
	}
	deadline := time.Now().Add(10 * time.Second)
	for counterValue(t, fx.svc, "sent") != float64(entries) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := counterValue(t, fx.svc, "sent"); got != float64(entries) {
		t.Errorf("lookup_log_records_total{result=sent} = %v, want %d (entries)", got, entries)
	}
}

// TestLookupLogHugeEntryGoesAlone: an entry over logBatchBytes gets a
// record of its own, so that a broker refusing it (over its message size)
// would lose no other entry.
func TestLookupLogHugeEntryGoesAlone(t *testing.T) {
	fx, brokers := logFixture(t, 0)
	huge := strings.Repeat("k", logBatchBytes+1000)
	if rec := fx.do(t, "POST", "/v1/lookup", `{"entity":"user","keys":["u1","`+huge+`","u2"],"features":["txn_count_7d"]}`); rec.Code != http.StatusOK {
		t.Fatalf("lookup: %d %.200s", rec.Code, rec.Body)
	}
	var records [][]string // keys of each record's entries
	entries := 0
	eachLogRecord(t, brokers, fx.cfg.Kafka.LookupLogTopic, 20*time.Second, func(r *kgo.Record) bool {
		var keys []string
		for b := range lookuplog.Entries(r.Value) {
			e, err := lookuplog.Decode(b)
			if err != nil {
				t.Fatalf("entry %.200s: %v", b, err)
			}
			keys = append(keys, e.Key)
			entries++
		}
		records = append(records, keys)
		return entries >= 3
	})
	if entries != 3 {
		t.Fatalf("%d entries logged, want 3", entries)
	}
	for _, keys := range records {
		if slices.Contains(keys, huge) && len(keys) != 1 {
			t.Errorf("the huge entry shares its record with %d others", len(keys)-1)
		}
	}
}

// TestLookupLogDropsWhatExceedsItsBuffer: a batch that would take the
// entries waiting for the broker past Options.LookupLogBuffer is dropped
// and counted, and the lookups are answered anyway.
func TestLookupLogDropsWhatExceedsItsBuffer(t *testing.T) {
	fx, _ := logFixture(t, 0, func(o *Options) { o.LookupLogBuffer = 5 })
	lookup := func(keys string) {
		t.Helper()
		if rec := fx.do(t, "POST", "/v1/lookup", `{"entity":"user","keys":[`+keys+`],"features":["txn_count_7d"]}`); rec.Code != http.StatusOK {
			t.Fatalf("lookup: %d %s", rec.Code, rec.Body)
		}
	}
	wait := func(result string, want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for counterValue(t, fx.svc, result) != want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := counterValue(t, fx.svc, result); got != want {
			t.Fatalf("lookup_log_records_total{result=%s} = %v, want %v", result, got, want)
		}
	}
	lookup(`"a","b","c","d","e","f","g","h","i","j"`) // one batch of 10 > 5
	wait("dropped", 10)
	lookup(`"u1","u2","u3"`)
	wait("sent", 3)
	if got := counterValue(t, fx.svc, "dropped"); got != 10 {
		t.Errorf("dropped %v, want 10", got)
	}
}

func TestLookupLogSampleIsValidated(t *testing.T) {
	for _, p := range []float64{1.5, math.NaN()} {
		if _, err := New(Options{Brokers: []string{"x:1"}, Config: loadTestConfig(t), Store: &state.Store{}, LookupLogSample: p}); err == nil {
			t.Errorf("LookupLogSample %v: want an error", p)
		}
	}
}

// flushLookupLog produces the batch s's lookup logger is filling and waits
// (up to 30s) for every produced entry's acknowledgement, and returns how
// many entries the broker acknowledged; none may have been dropped or have
// failed. franz-go runs a record's promise (which counts it) before Flush
// returns.
func flushLookupLog(t *testing.T, s *Service) int {
	t.Helper()
	s.llog.flushBatch()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.llog.cl.Load().Flush(ctx); err != nil {
		t.Fatalf("flush the lookup log: %v", err)
	}
	if lost := counterValue(t, s, "dropped") + counterValue(t, s, "error"); lost != 0 {
		t.Fatalf("%v lookup-log entries dropped or failed", lost)
	}
	return int(counterValue(t, s, "sent"))
}

func counterValue(t *testing.T, s *Service, result string) float64 {
	t.Helper()
	mfs, err := s.o.Gatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "featurepipe_lookup_log_records_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
