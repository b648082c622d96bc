package lookup

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// TestFeatureServiceLookup: a lookup naming a feature service answers
// exactly the service's features, each checked against the brute force,
// and byte for byte what listing those features answers.
func TestFeatureServiceLookup(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	for _, tc := range []struct {
		golden, entity, service string
		keys                    []string
		wantWarnings            []string
	}{
		{golden: "lookup_service", entity: "user", service: "fraud_scoring", keys: []string{"u1", "u2", "42", "u404"},
			wantWarnings: []string{"feature txn_amount_max_30d@1 is deprecated"}},
		{golden: "lookup_service_merchant", entity: "merchant", service: "merchant_quality", keys: []string{"m1", "m2"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			svc, err := fx.cfg.Service(tc.service)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := json.Marshal(LookupRequest{Entity: tc.entity, Keys: tc.keys, FeatureService: tc.service})
			rec := fx.do(t, "POST", "/v1/lookup", string(body))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			golden(t, tc.golden, rec.Body.Bytes())
			resp := fx.checkLookup(t, rec.Body.Bytes(), tc.keys, svc.Features)
			if !slices.Equal(resp.Warnings, tc.wantWarnings) {
				t.Errorf("warnings %q, want %q", resp.Warnings, tc.wantWarnings)
			}
			listed, _ := json.Marshal(LookupRequest{Entity: tc.entity, Keys: tc.keys, Features: svc.Features})
			want := fx.do(t, "POST", "/v1/lookup", string(listed))
			if !bytes.Equal(rec.Body.Bytes(), want.Body.Bytes()) {
				t.Errorf("service answer differs from listing its features:\nservice: %s\nlisted:  %s", rec.Body, want.Body)
			}
		})
	}
}

// TestFeatureServiceFeast: Feast's get-online-features with
// "feature_service" (what the Feast SDK sends for a FeatureService) answers
// the service's features as columns named as Feast's own server names the
// generated FeatureService's features (name, or view__name with
// full_feature_names; the pinned txn_count_7d@1 is the version its field
// reads), the same answer as listing them as view:name.
func TestFeatureServiceFeast(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	svc, err := fx.cfg.Service("fraud_scoring")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(svc.Features, []string{"txn_count_7d@1", "txn_amount_avg", "txn_amount_max_30d", "login_count_1h"}) {
		t.Fatalf("setup: fraud_scoring lists %q", svc.Features)
	}
	asViews := []string{"transactions:txn_count_7d", "transactions:txn_amount_avg", "transactions:txn_amount_max_30d", "logins:login_count_1h"}
	for _, full := range []bool{false, true} {
		req := map[string]any{"feature_service": "fraud_scoring", "entities": map[string]any{"user_id": []any{"u1", 42, "u2", "u404"}}, "full_feature_names": full}
		body, _ := json.Marshal(req)
		rec := fx.do(t, "POST", "/get-online-features", string(body))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if !full {
			golden(t, "feast_service", rec.Body.Bytes())
		}
		var resp FeastResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		want := []string{"user_id", "txn_count_7d", "txn_amount_avg", "txn_amount_max_30d", "login_count_1h"}
		if full {
			want = []string{"user_id", "transactions__txn_count_7d", "transactions__txn_amount_avg", "transactions__txn_amount_max_30d", "logins__login_count_1h"}
		}
		if !slices.Equal(resp.Metadata.FeatureNames, want) {
			t.Errorf("full=%v: feature_names %q, want %q", full, resp.Metadata.FeatureNames, want)
		}
		delete(req, "feature_service")
		req["features"] = asViews
		listedBody, _ := json.Marshal(req)
		listed := fx.do(t, "POST", "/get-online-features", string(listedBody))
		var wantResp FeastResponse
		if err := json.Unmarshal(listed.Body.Bytes(), &wantResp); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(resp, wantResp) {
			t.Errorf("full=%v: service answer differs from listing its features:\nservice: %s\nlisted:  %s", full, rec.Body, listed.Body)
		}
	}
}

// TestFeastServiceNames: a service reference that pins a version other
// than the one a bare name reads (which feast-repo cannot generate) keeps
// its name as listed in Feast's shape, so that two versions stay distinct.
func TestFeastServiceNames(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	requested, names := fx.svc.feastServiceNames([]string{"txn_amount_avg@1", "txn_amount_avg@2", "txn_amount_avg", "login_count_1h@1"})
	if want := []string{"txn_amount_avg@1", "txn_amount_avg", "txn_amount_avg", "login_count_1h"}; !slices.Equal(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
	if want := []string{"txn_amount_avg@1", "transactions:txn_amount_avg", "transactions:txn_amount_avg", "logins:login_count_1h"}; !slices.Equal(requested, want) {
		t.Errorf("requested %q, want %q", requested, want)
	}
}

// TestFeatureServiceErrors: the ways a request can name a service wrongly,
// on both routes, each a 4xx saying what to fix.
func TestFeatureServiceErrors(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	for _, tc := range []struct {
		name, path, body string
		status           int
		code, msg        string
	}{
		{name: "features and feature_service together are 400", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["u1"],"features":["txn_count_7d"],"feature_service":"fraud_scoring"}`,
			status: 400, code: "conflicting_features", msg: `give either "feature_service" or "features", not both`},
		{name: "unknown service is 404 and lists the services", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["u1"],"feature_service":"fraud"}`,
			status: 404, code: "unknown_feature_service", msg: `unknown feature service "fraud"; did you mean "fraud_scoring"? feature services: fraud_scoring, merchant_quality`},
		{name: "service of another entity is 400", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["u1"],"feature_service":"merchant_quality"}`,
			status: 400, code: "wrong_entity", msg: "feature service merchant_quality serves entity merchant, not user"},
		{name: "neither features nor a service is 400 naming both", path: "/v1/lookup",
			body:   `{"entity":"user","keys":["u1"]}`,
			status: 400, code: "missing_features", msg: `or "feature_service" a feature service`},
		{name: "the service is checked after the entity", path: "/v1/lookup",
			body:   `{"entity":"shop","keys":["u1"],"feature_service":"fraud_scoring"}`,
			status: 404, code: "unknown_entity", msg: `unknown entity "shop"`},
		{name: "feast: features and feature_service together are 400", path: "/get-online-features",
			body:   `{"features":["txn_count_7d"],"feature_service":"fraud_scoring","entities":{"user_id":["u1"]}}`,
			status: 400, code: "conflicting_features", msg: "not both"},
		{name: "feast: unknown service is 404", path: "/get-online-features",
			body:   `{"feature_service":"fraud_v1","entities":{"user_id":["u1"]}}`,
			status: 404, code: "unknown_feature_service", msg: "feature services: fraud_scoring, merchant_quality"},
		{name: "feast: service of another join key is 400", path: "/get-online-features",
			body:   `{"feature_service":"fraud_scoring","entities":{"merchant_id":["m1"]}}`,
			status: 400, code: "wrong_entity", msg: "feature service fraud_scoring serves entity user, not merchant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := fx.do(t, "POST", tc.path, tc.body)
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			var eb errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
				t.Fatalf("error body is not the JSON envelope: %v: %s", err, rec.Body)
			}
			if eb.Error.Code != tc.code || !strings.Contains(eb.Error.Message, tc.msg) {
				t.Errorf("error %s %q, want %s containing %q", eb.Error.Code, eb.Error.Message, tc.code, tc.msg)
			}
		})
	}
}

// TestFeatureServiceBareNameIsNewestReady: a bare name in a service resolves
// at lookup time as a bare name in the request does: to the newest ready
// version, reported in the value's version.
func TestFeatureServiceBareNameIsNewestReady(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	setAvg2 := func(state string) {
		r, err := registry.StatusRecord("registry", registry.Status{Feature: "txn_amount_avg@2", Topic: "transactions", Partition: 0, State: state})
		if err != nil {
			t.Fatal(err)
		}
		if err := fx.svc.reg.Apply(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	version := func() FeatureValue {
		rec := fx.do(t, http.MethodPost, "/v1/lookup", `{"entity":"user","keys":["u1"],"feature_service":"fraud_scoring"}`)
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d %s", rec.Code, rec.Body)
		}
		var resp LookupResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		return resp.Results[0].Features["txn_amount_avg"]
	}
	setAvg2(registry.StateWarmingUp)
	if v := version(); v.Version != 1 || v.Status == StatusWarmingUp {
		t.Fatalf("bare name in a service while @2 warms up: %+v, want version 1", v)
	}
	setAvg2(registry.StateReady)
	if v := version(); v.Version != 2 || v.Status == StatusWarmingUp {
		t.Fatalf("bare name in a service once @2 is ready: %+v, want version 2", v)
	}
}

// pick (the request-time resolution, precomputed for speed) agrees with
// config.File.ResolveReady (what `featurepipe features --services` shows)
// for every reference under every warming-up combination of a name's
// versions.
func TestPickAgreesWithResolveReady(t *testing.T) {
	cfg := pickTestConfig(t)
	svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: newFixture(t, Options{}, true).svc.o.Store})
	if err != nil {
		t.Fatal(err)
	}
	var ids, refs []string
	for _, f := range cfg.Features {
		ids, refs = append(ids, f.ID), append(refs, f.Name, f.ID)
	}
	// Version i warms up when bit i%7 of mask is set: the 7 versions of mix
	// and dep (the last 7 ids) take every combination, the others follow.
	for mask := 0; mask < 1<<7; mask++ {
		for i, id := range ids {
			state := registry.StateReady
			if mask&(1<<(i%7)) != 0 {
				state = registry.StateWarmingUp
			}
			r, err := registry.StatusRecord("registry", registry.Status{Feature: id, Topic: "transactions", Partition: 0, State: state})
			if err != nil {
				t.Fatal(err)
			}
			if err := svc.reg.Apply(r.Key, r.Value); err != nil {
				t.Fatal(err)
			}
		}
		for _, ref := range refs {
			want, ready, werr := cfg.ResolveReady(ref, svc.reg.Ready)
			got, gerr := svc.pick(ref)
			if werr != nil || gerr != nil || got.def != want || got.warming == ready {
				t.Fatalf("mask %b, %q: pick %v (warming %v, %v), ResolveReady %v (ready %v, %v)", mask, ref, got.def, got.warming, gerr, want, ready, werr)
			}
		}
	}
}
