package lookup

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// Readiness needs both the view caught up with the feature log and the
// registry view caught up with the registry: until the registry is read, a
// version still warming up would be served as ready. Either may come first.
func TestReadinessWaitsForTheRegistry(t *testing.T) {
	for _, registryFirst := range []bool{false, true} {
		fx := newFixture(t, Options{}, false)
		s := fx.svc
		steps := []func(){func() { s.setCatchUp(map[int32]int64{}, nil) }, s.registryCaughtUp}
		if registryFirst {
			steps[0], steps[1] = steps[1], steps[0]
		}
		steps[0]()
		if s.Ready() {
			t.Fatalf("registry first %v: ready after one of the two caught up", registryFirst)
		}
		for _, path := range []string{"/readyz", "/v1/features/user/u1"} {
			if rec := fx.do(t, http.MethodGet, path, ""); rec.Code != http.StatusServiceUnavailable {
				t.Errorf("registry first %v: %s answered %d before both caught up, want 503", registryFirst, path, rec.Code)
			}
		}
		steps[1]()
		if !s.Ready() {
			t.Fatalf("registry first %v: not ready once both caught up", registryFirst)
		}
		if rec := fx.do(t, http.MethodGet, "/readyz", ""); rec.Code != http.StatusOK {
			t.Errorf("registry first %v: /readyz %d once both caught up", registryFirst, rec.Code)
		}
	}
}

// pick agrees with config.File.Feature whenever every version is ready:
// the precomputed preference order is config's rule.
func TestPickAgreesWithConfigFeature(t *testing.T) {
	cfg := pickTestConfig(t)
	svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: newFixture(t, Options{}, true).svc.o.Store})
	if err != nil {
		t.Fatal(err)
	}
	refs := []string{"nope", "txn_amount_avg@0", "txn_amount_avg@9", "txn_amount_avg@x", "txn_amount_avg@01", "@1", ""}
	for _, f := range cfg.Features {
		refs = append(refs, f.Name, f.ID)
	}
	for _, ref := range refs {
		want, werr := cfg.Feature(ref)
		got, gerr := svc.pick(ref)
		switch {
		case (werr == nil) != (gerr == nil):
			t.Errorf("%q: pick error %v, config error %v", ref, gerr, werr)
		case werr != nil && werr.Error() != gerr.Error():
			t.Errorf("%q: pick error %q, config error %q", ref, gerr, werr)
		case werr == nil && (got.def != want || got.warming):
			t.Errorf("%q: pick %s (warming %v), config %s", ref, got.def.ID, got.warming, want.ID)
		}
	}
}

// pickTestConfig is the test feature file plus names whose versions are
// deprecated in every combination, listed out of version order.
func pickTestConfig(t *testing.T) *config.File {
	t.Helper()
	src, err := os.ReadFile("testdata/features.yaml")
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
	text := strings.ReplaceAll(string(src), "../../../schemas/", abs("../../schemas")+"/")
	text = strings.ReplaceAll(text, "schema: review.avsc", "schema: "+abs("testdata/review.avsc"))
	for _, f := range []string{"mix 3 true", "mix 1 false", "mix 4 true", "mix 2 false", "dep 1 true", "dep 3 true", "dep 2 true"} {
		var name string
		var version int
		var deprecated bool
		if _, err := fmt.Sscan(f, &name, &version, &deprecated); err != nil {
			t.Fatal(err)
		}
		text += fmt.Sprintf("  - {name: %s, version: %d, entity: user, source: transactions, aggregation: count, window: %dh, deprecated: %v, owner: t, description: d}\n",
			name, version, version, deprecated)
	}
	path := filepath.Join(t.TempDir(), "features.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("pick test feature file: %v", err)
	}
	if f, _ := cfg.Feature("mix"); f == nil || f.ID != "mix@2" {
		t.Fatalf("config resolves mix to %v, want mix@2 (the newest not deprecated)", f)
	}
	if f, _ := cfg.Feature("dep"); f == nil || f.ID != "dep@3" {
		t.Fatalf("config resolves dep to %v, want dep@3 (all deprecated: the newest)", f)
	}
	return cfg
}

// A bare name skips versions warming up in preference order, and falls back
// to the preferred version, reported warming, when none is ready.
func TestPickSkipsWarmingVersions(t *testing.T) {
	fx := newFixture(t, Options{}, true)
	warm := func(id string) {
		r, err := registry.StatusRecord("registry", registry.Status{Feature: id, Topic: "transactions", Partition: 0, State: registry.StateWarmingUp})
		if err != nil {
			t.Fatal(err)
		}
		if err := fx.svc.reg.Apply(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	warm("txn_amount_avg@2")
	if got, err := fx.svc.pick("txn_amount_avg"); err != nil || got.def.ID != "txn_amount_avg@1" || got.warming {
		t.Fatalf("@2 warming: %+v %v, want txn_amount_avg@1, ready", got.def, err)
	}
	warm("txn_amount_avg@1")
	if got, err := fx.svc.pick("txn_amount_avg"); err != nil || got.def.ID != "txn_amount_avg@2" || !got.warming {
		t.Fatalf("all warming: %+v %v, want txn_amount_avg@2, warming", got.def, err)
	}
}
