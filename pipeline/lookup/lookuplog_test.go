package lookup

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// logFixture is a fixture whose service runs against a kfake broker, so
// that its lookup log can be consumed.
func logFixture(t testing.TB, sample float64) (*fixture, []string) {
	t.Helper()
	brokers := newTestCluster(t, 3).ListenAddrs()
	cfg := loadTestConfig(t)
	st := openTestStore(t)
	T := fixtureNow.UnixMilli()
	events := fixtureData(T)
	writeView(t, st, cfg, events, T)
	svc, err := New(Options{Brokers: brokers, Config: cfg, Store: st, LookupLogSample: sample,
		Now: func() time.Time { return fixtureNow }})
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, svc)
	waitReady(t, svc, 10*time.Second, "the service did not become ready")
	return &fixture{svc: svc, cfg: cfg, events: events, T: T, h: svc.Handler()}, brokers
}

// consumeLog reads the lookup-log topic until it has want records or wait
// passes, and returns the decoded entries with their record keys.
func consumeLog(t *testing.T, brokers []string, topic string, want int, wait time.Duration) (entries []*lookuplog.Entry, keys []string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for len(entries) < want || want < 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			e, err := lookuplog.Decode(r.Value)
			if err != nil {
				t.Fatalf("record %s: %v", r.Value, err)
			}
			entries = append(entries, e)
			keys = append(keys, string(r.Key))
		})
	}
	return entries, keys
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

	entries, keys := consumeLog(t, brokers, fx.cfg.Kafka.LookupLogTopic, len(want), 10*time.Second)
	if len(entries) != len(want) {
		t.Fatalf("%d lookup-log records, want %d (one per served key)", len(entries), len(want))
	}
	for i, e := range entries {
		w, ok := want[e.Key]
		if !ok {
			t.Errorf("entry for key %q, which was not served", e.Key)
			continue
		}
		if keys[i] != e.Key || e.Entity != w.entity || e.At != fx.T {
			t.Errorf("entry %+v with record key %q, want entity %s, record key %s, at %d", e, keys[i], w.entity, e.Key, fx.T)
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
			// Read until nothing more arrives (the producer lingers 10ms).
			entries, _ := consumeLog(t, brokers, fx.cfg.Kafka.LookupLogTopic, -1, 2*time.Second)
			if got := len(entries); got < tc.min || got > tc.max {
				t.Errorf("%d of %d keys logged, want %d..%d", got, draws, tc.min, tc.max)
			}
		})
	}
}

func TestLookupLogSampleIsValidated(t *testing.T) {
	for _, p := range []float64{1.5, math.NaN()} {
		if _, err := New(Options{Brokers: []string{"x:1"}, Config: loadTestConfig(t), Store: &state.Store{}, LookupLogSample: p}); err == nil {
			t.Errorf("LookupLogSample %v: want an error", p)
		}
	}
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
