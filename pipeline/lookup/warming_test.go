package lookup

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// TestWarmingUpVersions: while txn_amount_avg@2 is bootstrapping in one
// partition, a bare name resolves to @1 (the newest ready version), an
// explicit @2 is answered with status WARMING_UP, and once every partition
// is ready the bare name moves to @2.
func TestWarmingUpVersions(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	setStatus := func(state string) {
		for _, p := range []int32{0, 1} {
			st := state
			if p == 1 {
				st = registry.StateReady
			}
			r, err := registry.StatusRecord("registry", registry.Status{Feature: "txn_amount_avg@2", Topic: "transactions", Partition: p, State: st})
			if err != nil {
				t.Fatal(err)
			}
			if err := fx.svc.reg.Apply(r.Key, r.Value); err != nil {
				t.Fatal(err)
			}
		}
	}
	lookup := func(feature string) FeatureValue {
		rec := fx.do(t, http.MethodPost, "/v1/lookup", `{"entity":"user","keys":["u1"],"features":["`+feature+`"]}`)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: HTTP %d %s", feature, rec.Code, rec.Body)
		}
		var resp LookupResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		return resp.Results[0].Features[feature]
	}

	setStatus(registry.StateWarmingUp)
	if v := lookup("txn_amount_avg"); v.Version != 1 || v.Status == StatusWarmingUp {
		t.Fatalf("bare name while @2 warms up: %+v, want version 1", v)
	}
	v2 := lookup("txn_amount_avg@2")
	if v2.Version != 2 || v2.Status != StatusWarmingUp {
		t.Fatalf("explicit @2 while warming up: %+v, want WARMING_UP", v2)
	}
	rec := fx.do(t, http.MethodGet, "/v1/features/user/u1", "")
	if !strings.Contains(rec.Body.String(), `"version":1`) || strings.Contains(rec.Body.String(), StatusWarmingUp) {
		t.Fatalf("GET /v1/features must answer the ready version: %s", rec.Body)
	}
	var entity LookupResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &entity); err != nil {
		t.Fatal(err)
	}
	if v, ok := entity.Results[0].Features["txn_amount_avg"]; !ok || v.Version != 1 || v.Status == StatusWarmingUp {
		t.Fatalf("GET /v1/features: txn_amount_avg %+v (present %v), want the ready version 1: %s", v, ok, rec.Body)
	}

	setStatus(registry.StateReady)
	if v := lookup("txn_amount_avg"); v.Version != 2 || v.Status == StatusWarmingUp {
		t.Fatalf("bare name once @2 is ready: %+v, want version 2", v)
	}
}
