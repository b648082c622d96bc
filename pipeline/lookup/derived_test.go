package lookup

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// derivedFixture is the lookup fixture with two more features: ratio =
// txn_amount_sum_1h / txn_amount_avg (the bare name reads @2, the newest),
// ratio2 = ratio * 2.0 (derived from a derived feature), and last_fresh, the
// lifetime last amount with a ttl of 1 day.
func derivedFixture(t *testing.T) *fixture {
	t.Helper()
	raw, err := os.ReadFile("testdata/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	doc := strings.NewReplacer("../../../schemas/", abs("../../schemas")+"/", "review.avsc", abs("testdata/review.avsc")).Replace(string(raw)) +
		`  - {name: ratio, version: 1, entity: user, expression: "txn_amount_sum_1h / txn_amount_avg", owner: t, description: d}
  - {name: ratio2, version: 1, entity: user, expression: "ratio * 2.0", owner: t, description: d}
  - {name: last_fresh, version: 1, entity: user, source: transactions, aggregation: last, field: amount, window: lifetime, ttl: 1d, owner: t, description: d}
`
	path := filepath.Join(t.TempDir(), "features.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st := openTestStore(t)
	T := fixtureNow.UnixMilli()
	events := fixtureData(T)
	writeView(t, st, cfg, events, T)
	svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: st, Now: func() time.Time { return fixtureNow }})
	if err != nil {
		t.Fatal(err)
	}
	svc.setCatchUp(map[int32]int64{}, nil)
	svc.registryCaughtUp()
	return &fixture{svc: svc, cfg: cfg, events: events, T: T, h: svc.Handler()}
}

// TestDerivedAndTTLLookups: a derived value is its expression over its
// inputs' values (brute force), NOT_FOUND for an unknown key, WARMING_UP
// while an input is; a ttl expires a last event older than it (u2's are 40
// days old, u1's 1 ms) into EXPIRED with the empty window's null.
func TestDerivedAndTTLLookups(t *testing.T) {
	fx := derivedFixture(t)
	lookup := func(keys string) LookupResponse {
		rec := fx.do(t, http.MethodPost, "/v1/lookup", `{"entity":"user","keys":[`+keys+`],"features":["ratio","last_fresh","ratio2"]}`)
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d %s", rec.Code, rec.Body)
		}
		var resp LookupResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	avg2, _ := fx.cfg.Feature("txn_amount_avg@2")
	sum, _ := fx.cfg.Feature("txn_amount_sum_1h")
	bf := func(f *config.Feature, key string) (float64, bool) {
		return aggtest.BruteForce(f.Aggregation, f.Window, fx.events["transactions"][key], fx.T)
	}
	resp := lookup(`"u1","u2","u404"`)
	s, sok := bf(sum, "u1")
	a, aok := bf(avg2, "u1")
	if !sok || !aok || a == 0 {
		t.Fatalf("fixture: u1 has sum %v %v, avg %v %v; the test needs both", s, sok, a, aok)
	}
	u1, u2, u404 := resp.Results[0].Features, resp.Results[1].Features, resp.Results[2].Features
	if got := u1["ratio"]; got.Status != StatusPresent || got.Value == nil || !aggtest.Close(*got.Value, s/a) || got.Version != 1 {
		t.Errorf("u1 ratio = %+v (%v), want PRESENT %v", got, fmtValue(got.Value), s/a)
	}
	if got := u1["ratio2"]; got.Status != StatusPresent || got.Value == nil || !aggtest.Close(*got.Value, 2*s/a) {
		t.Errorf("u1 ratio2 (derived from derived) = %+v (%v), want PRESENT %v", got, fmtValue(got.Value), 2*s/a)
	}
	// u2: no event in the last hour (sum 0) nor 7 days (avg@2 null): null.
	if got := u2["ratio"]; got.Status != StatusPresent || got.Value != nil {
		t.Errorf("u2 ratio = %+v (%v), want PRESENT null (its avg input is null)", got, fmtValue(got.Value))
	}
	if got := u404["ratio"]; got.Status != StatusNotFound || got.Value != nil {
		t.Errorf("u404 ratio = %+v, want NOT_FOUND null", got)
	}
	if got := u1["last_fresh"]; got.Status != StatusPresent || got.Value == nil || *got.Value != 3.25 {
		t.Errorf("u1 last_fresh = %+v (%v), want PRESENT 3.25 (its event at T-1)", got, fmtValue(got.Value))
	}
	if got := u2["last_fresh"]; got.Status != StatusExpired || got.Value != nil {
		t.Errorf("u2 last_fresh = %+v (%v), want EXPIRED null (its newest event is 40+ days old, ttl 1d)", got, fmtValue(got.Value))
	}
	if got := u404["last_fresh"]; got.Status != StatusNotFound {
		t.Errorf("u404 last_fresh = %+v, want NOT_FOUND", got)
	}
	// Feast: EXPIRED without a value is OUTSIDE_MAX_AGE.
	rec := fx.do(t, http.MethodPost, "/get-online-features", `{"features":["transactions:last_fresh"],"entities":{"user_id":["u2"]}}`)
	var feast FeastResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &feast); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("feast: HTTP %d %s", rec.Code, rec.Body)
	}
	if st := feast.Results[1].Statuses[0]; st != feastOutsideMaxAge || feast.Results[1].Values[0] != nil {
		t.Errorf("feast last_fresh of u2: %s %v, want OUTSIDE_MAX_AGE null", st, feast.Results[1].Values[0])
	}

	// An input warming up makes the derived feature WARMING_UP (its value
	// is computed all the same).
	r, err := registry.StatusRecord("registry", registry.Status{Feature: "txn_amount_avg@2", Topic: "transactions", Partition: 0, State: registry.StateWarmingUp})
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.svc.reg.Apply(r.Key, r.Value); err != nil {
		t.Fatal(err)
	}
	if got := lookup(`"u1"`).Results[0].Features["ratio"]; got.Status != StatusWarmingUp || got.Value == nil || !aggtest.Close(*got.Value, s/a) {
		t.Errorf("u1 ratio while txn_amount_avg@2 warms up = %+v, want WARMING_UP %v", got, s/a)
	}
	if got := lookup(`"u1"`).Results[0].Features["last_fresh"]; got.Status != StatusPresent {
		t.Errorf("last_fresh (no warming input) = %+v, want PRESENT", got)
	}
}

// TestTTLBoundary: a last event exactly ttl old is PRESENT, 1 ms older
// EXPIRED with the empty-window value (null for last).
func TestTTLBoundary(t *testing.T) {
	fx := derivedFixture(t)
	f, _ := fx.cfg.Feature("last_fresh")
	v := new(lookupView)
	for _, tc := range []struct {
		age    int64
		status string
		ok     bool
	}{{aggregations.Day - 1, StatusPresent, true}, {aggregations.Day, StatusPresent, true}, {aggregations.Day + 1, StatusExpired, false}} {
		T := fx.T + tc.age // u1's newest event is at fx.T (9999; it counts for T > fx.T)
		if err := fx.svc.view("user", "u1", v); err != nil {
			t.Fatal(err)
		}
		x, ok, status, _, err := foldDef(f, v, T, 0)
		if err != nil || status != tc.status || ok != tc.ok || ok && x != 9999 {
			t.Errorf("newest event %d ms old (ttl %d): %v %v %s %v; want %s", tc.age, f.TTL, x, ok, status, err, tc.status)
		}
	}
}

// TestDerivedNeedsItsInputsScopes: a derived value reveals its inputs, so a
// token reads a derived feature only when it may read every input's tags.
func TestDerivedNeedsItsInputsScopes(t *testing.T) {
	fx := derivedFixture(t)
	tokens, err := ParseTokens("tokens.yaml", []byte(authTokensFile()), fx.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fx.cfg.Features {
		if f.Name == "txn_amount_avg" {
			f.Tags = []string{"pii"} // ratio and ratio2 read txn_amount_avg@2
		}
	}
	fx.svc.o.Tokens = tokens
	body := `{"entity":"user","keys":["u1"],"features":["ratio2"]}`
	rec := fx.doAuth(t, http.MethodPost, "/v1/lookup", body, "Bearer "+tokUser)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "feature txn_amount_avg@2 (read by derived feature ratio2@1) is tagged pii") {
		t.Errorf("ratio2 without the pii scope of its input's input: HTTP %d %s", rec.Code, rec.Body)
	}
	if rec := fx.doAuth(t, http.MethodPost, "/v1/lookup", body, "Bearer "+tokUserPII); rec.Code != http.StatusOK {
		t.Errorf("ratio2 with the pii scope: HTTP %d %s", rec.Code, rec.Body)
	}
	if rec := fx.doAuth(t, http.MethodPost, "/v1/lookup", `{"entity":"user","keys":["u1"],"features":["last_fresh"]}`, "Bearer "+tokUser); rec.Code != http.StatusOK {
		t.Errorf("an untagged feature: HTTP %d %s", rec.Code, rec.Body)
	}
}
