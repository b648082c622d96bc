package lookup

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/featurepipe/featurepipe/internal/config"
)

// doAs sends a request with the consumer header (none when consumer is "")
// and, when set, a bearer token.
func (fx *fixture) doAs(t testing.TB, consumer, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/lookup", strings.NewReader(body))
	if consumer != "" {
		req.Header.Set(ConsumerHeader, consumer)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	fx.h.ServeHTTP(rec, req)
	return rec
}

// lookupsBy returns the value of metric name{feature,version,consumer}, or
// -1 when the series does not exist.
func lookupsBy(t testing.TB, g prometheus.Gatherer, name, feature, version, consumer string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["feature"] == feature && l["version"] == version && l["consumer"] == consumer {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

func consumerFixture(t testing.TB, o Options) (*fixture, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	o.Registerer, o.Gatherer = reg, reg
	return newFixture(t, o, true), reg
}

const lookupFeatures = `{"entity":"user","keys":["u1","u2"],"features":["txn_count_7d@1","txn_amount_max_30d"]}`

// The header names the consumer; without it the consumer is anonymous; a
// value is counted once per key and feature version, under the feature's
// name and version; deprecated versions are counted again in their own
// metric.
func TestConsumerHeaderNamesTheCounters(t *testing.T) {
	fx, reg := consumerFixture(t, Options{})
	for _, c := range []string{"fraud-api", "fraud-api", ""} {
		if rec := fx.doAs(t, c, "", lookupFeatures); rec.Code != 200 {
			t.Fatalf("%q: %d %s", c, rec.Code, rec.Body)
		}
	}
	for _, tc := range []struct {
		metric, feature, consumer string
		want                      float64
	}{
		{"featurepipe_feature_lookups_total", "txn_count_7d", "fraud-api", 4},
		{"featurepipe_feature_lookups_total", "txn_count_7d", "anonymous", 2},
		{"featurepipe_feature_lookups_total", "txn_amount_max_30d", "fraud-api", 4},
		{"featurepipe_deprecated_lookups_total", "txn_amount_max_30d", "fraud-api", 4},
		{"featurepipe_deprecated_lookups_total", "txn_amount_max_30d", "anonymous", 2},
		{"featurepipe_deprecated_lookups_total", "txn_count_7d", "fraud-api", -1}, // not deprecated: no series
	} {
		if got := lookupsBy(t, reg, tc.metric, tc.feature, "1", tc.consumer); got != tc.want {
			t.Errorf("%s{feature=%s,version=1,consumer=%s} = %v, want %v", tc.metric, tc.feature, tc.consumer, got, tc.want)
		}
	}
}

// Refused requests count nothing; a malformed consumer name is a 400.
func TestConsumerHeaderIsValidated(t *testing.T) {
	fx, reg := consumerFixture(t, Options{})
	for _, bad := range []string{"fraud api", strings.Repeat("x", 65), "a/b", "é"} {
		rec := fx.doAs(t, bad, "", lookupFeatures)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "invalid_consumer") {
			t.Errorf("consumer %q: %d %s, want 400 invalid_consumer", bad, rec.Code, rec.Body)
		}
	}
	if rec := fx.doAs(t, "ok", "", `{"entity":"user","keys":["u1"],"features":["nope"]}`); rec.Code != 404 {
		t.Fatalf("unknown feature: %d", rec.Code)
	}
	if got := lookupsBy(t, reg, "featurepipe_feature_lookups_total", "txn_count_7d", "1", "ok"); got != -1 {
		t.Fatalf("a refused request was counted: %v", got)
	}
	for _, good := range []string{"a", "fraud-api.v2_x", strings.Repeat("x", 64)} {
		if !ValidConsumer(good) {
			t.Errorf("ValidConsumer(%q) = false", good)
		}
	}
}

// With tokens the token's consumer is the consumer: the same name in the
// header is accepted, another one refused (400 consumer_mismatch), and the
// token's consumer is what is counted.
func TestTokenConsumerWinsOverTheHeader(t *testing.T) {
	tokens, err := ParseTokens("tokens.yaml", []byte(authTokensFile()), loadTestConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	fx, reg := consumerFixture(t, Options{Tokens: tokens})
	if rec := fx.doAs(t, "", tokUser, lookupFeatures); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if rec := fx.doAs(t, "fraud-model", tokUser, lookupFeatures); rec.Code != 200 {
		t.Fatalf("same name in the header: %d %s", rec.Code, rec.Body)
	}
	rec := fx.doAs(t, "someone-else", tokUser, lookupFeatures)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "consumer_mismatch") || !strings.Contains(rec.Body.String(), "fraud-model") {
		t.Fatalf("another name in the header: %d %s, want 400 consumer_mismatch naming fraud-model", rec.Code, rec.Body)
	}
	if got := lookupsBy(t, reg, "featurepipe_feature_lookups_total", "txn_count_7d", "1", "fraud-model"); got != 4 {
		t.Fatalf("fraud-model counted %v, want 4", got)
	}
	if got := lookupsBy(t, reg, "featurepipe_feature_lookups_total", "txn_count_7d", "1", "someone-else"); got != -1 {
		t.Fatalf("the refused header was counted: %v", got)
	}
	// Without a token, still 401 whatever the header says.
	if rec := fx.doAs(t, "fraud-model", "", lookupFeatures); rec.Code != 401 {
		t.Fatalf("no token: %d", rec.Code)
	}
}

// Names beyond MaxConsumers fold into "other"; names seen before keep
// their label.
func TestConsumerCardinalityIsBounded(t *testing.T) {
	fx, reg := consumerFixture(t, Options{MaxConsumers: 3})
	body := `{"entity":"user","keys":["u1"],"features":["txn_count_7d@1"]}`
	for i := range 6 {
		if rec := fx.doAs(t, fmt.Sprintf("c%d", i), "", body); rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	_ = fx.doAs(t, "c0", "", body)
	_ = fx.doAs(t, "", "", body)
	want := map[string]float64{"c0": 2, "c1": 1, "c2": 1, "c3": -1, "c5": -1, "other": 3, "anonymous": 1}
	for c, w := range want {
		if got := lookupsBy(t, reg, "featurepipe_feature_lookups_total", "txn_count_7d", "1", c); got != w {
			t.Errorf("consumer %s: %v, want %v", c, got, w)
		}
	}
}

// Counting a served answer allocates nothing once the consumer's counters
// exist (the answer path itself: TestAnswerPathDoesNotAllocate).
func TestCountingDoesNotAllocate(t *testing.T) {
	fx, _ := consumerFixture(t, Options{})
	s := fx.svc
	a, err := s.lookup(s.entities["user"], []string{"u1", "u2"}, []string{"txn_count_7d@1", "txn_amount_max_30d"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.release()
	a.consumer = "fraud-api"
	s.count(a) // creates the counters
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	if n := testing.AllocsPerRun(200, func() { s.count(a) }); n != 0 {
		t.Fatalf("counting allocated %v times", n)
	}
}

// The lookup log records the header's consumer, anonymous without it, and
// the feature service a request named.
func TestLookupLogRecordsConsumerAndService(t *testing.T) {
	fx, brokers := logFixture(t, 0)
	if rec := fx.doAs(t, "fraud-api", "", `{"entity":"user","keys":["u1"],"feature_service":"fraud_scoring"}`); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if rec := fx.doAs(t, "", "", `{"entity":"user","keys":["u2"],"features":["txn_count_7d"]}`); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	entries := consumeLog(t, brokers, fx.cfg.Kafka.LookupLogTopic, 2, 20*time.Second)
	got := map[string]string{}
	ids := map[string]bool{}
	for _, e := range entries {
		got[e.Key] = e.Consumer + "/" + e.Service
		if !strings.HasPrefix(e.Request, fx.svc.replicaID+"-") {
			t.Errorf("entry %s: request id %q, want %s-<sequence>", e.Key, e.Request, fx.svc.replicaID)
		}
		ids[e.Request] = true
	}
	if len(ids) != 2 {
		t.Errorf("two requests carry %d distinct request ids", len(ids))
	}
	if want := map[string]string{"u1": "fraud-api/fraud_scoring", "u2": "anonymous/"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lookup log consumer/service %v, want %v", got, want)
	}
}

// A deprecated version keeps answering, with a warning naming its
// replacement and sunset, and its lookups are counted per consumer so its
// owner sees who still has to move.
func TestDeprecatedLookupNamesTheReplacement(t *testing.T) {
	reg := prometheus.NewRegistry()
	fx := newFixtureWith(t, Options{Registerer: reg, Gatherer: reg}, true, func(cfg *config.File) {
		f, err := cfg.Feature("txn_amount_max_30d@1")
		if err != nil {
			t.Fatal(err)
		}
		f.ReplacedBy, f.Sunset = "txn_amount_avg@2", time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)
	})
	body := `{"entity":"user","keys":["u1"],"features":["txn_amount_max_30d@1","txn_count_7d"]}`
	for _, c := range []string{"fraud-api", "fraud-api", "reco-api"} {
		rec := fx.doAs(t, c, "", body)
		if rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		var resp LookupResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		want := "feature txn_amount_max_30d@1 is deprecated; use txn_amount_avg@2 instead (sunset 2027-01-31)"
		if len(resp.Warnings) != 1 || resp.Warnings[0] != want {
			t.Fatalf("warnings %q, want [%q]", resp.Warnings, want)
		}
		if v := resp.Results[0].Features["txn_amount_max_30d@1"]; v.Status != StatusPresent {
			t.Fatalf("the deprecated version stopped answering: %+v", v)
		}
	}
	for c, want := range map[string]float64{"fraud-api": 2, "reco-api": 1} {
		if got := lookupsBy(t, reg, "featurepipe_deprecated_lookups_total", "txn_amount_max_30d", "1", c); got != want {
			t.Errorf("deprecated lookups of %s: %v, want %v", c, got, want)
		}
	}
}

// Once MaxConsumers header names have entries, a new name folds into
// "other" without the writers' lock: a stream of distinct names (a client
// sending a request id as its consumer) does not serialize lookups.
func TestFullConsumerSetTakesNoLock(t *testing.T) {
	fx, _ := consumerFixture(t, Options{MaxConsumers: 2})
	cs := &fx.svc.consumers
	if cs.get("a").label != "a" || cs.get("b").label != "b" {
		t.Fatal("the first two names did not get their own entries")
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	got := make(chan string, 1)
	go func() { got <- cs.get("c").label }()
	select {
	case l := <-got:
		if l != OtherConsumer {
			t.Fatalf("a name beyond MaxConsumers: label %q, want %q", l, OtherConsumer)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a name beyond MaxConsumers waits for the writers' lock")
	}
	if cs.get("a").label != "a" {
		t.Fatal("a name seen before lost its entry")
	}
}
