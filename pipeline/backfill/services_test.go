package backfill

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/testkit"
)

// TestBackfillFeatureService: naming a feature service is the same as
// listing its features: the same columns with the same (brute-force)
// values, and a manifest that records the service and each column's
// resolved version and hash.
func TestBackfillFeatureService(t *testing.T) {
	s := newScenario(t, 3)
	svc, err := s.cfg.Service("fraud_scoring")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spine := filepath.Join(dir, "spine.csv")
	writeSpine(t, spine, s.rows)
	run := func(o Options) (*Manifest, *table) {
		t.Helper()
		o.Brokers, o.Config, o.Spine = s.brokers, s.cfg, spine
		m, err := Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		return m, readTable(t, o.Out)
	}
	m, got := run(Options{FeatureService: "fraud_scoring", Out: filepath.Join(dir, "svc.csv")})

	// Columns as --features names them: the non-default version pinned by
	// the service is "name@N"; the bare name is the default version.
	cols := map[string]*config.Feature{}
	for _, ref := range []string{"txn_avg_30d@1", "txn_avg_30d@2", "txn_count_7d@1", "login_count_1h@1"} {
		f, err := s.cfg.Feature(ref)
		if err != nil {
			t.Fatal(err)
		}
		name := f.Name
		if ref == "txn_avg_30d@1" {
			name = ref
		}
		cols[name] = f
	}
	s.check(t, filepath.Join(dir, "svc.csv"), s.rows, cols, ModeEvent)

	if m.FeatureService != "fraud_scoring" {
		t.Errorf("manifest feature_service %q, want fraud_scoring", m.FeatureService)
	}
	if len(m.Features) != len(svc.Features) {
		t.Fatalf("manifest has %d features, the service %d", len(m.Features), len(svc.Features))
	}
	for _, mf := range m.Features {
		f := cols[mf.Column]
		if f == nil || mf.Name != f.Name || mf.Version != f.Version || mf.Hash != f.Hash {
			t.Errorf("manifest feature %+v; want column of %v", mf, f)
		}
	}
	data, err := os.ReadFile(ManifestPath(filepath.Join(dir, "svc.csv")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"feature_service": "fraud_scoring"`) {
		t.Errorf("manifest file does not record the service:\n%s", data)
	}

	listed, want := run(Options{Features: svc.Features, Out: filepath.Join(dir, "listed.csv")})
	if !reflect.DeepEqual(got.columns, want.columns) || !reflect.DeepEqual(got.cells, want.cells) || !reflect.DeepEqual(got.null, want.null) {
		t.Errorf("output through the service differs from listing its features: columns %v vs %v", got.columns, want.columns)
	}
	if listed.FeatureService != "" || !reflect.DeepEqual(listed.Features, m.Features) {
		t.Errorf("manifest of the listed run: service %q, features %+v; want none and %+v", listed.FeatureService, listed.Features, m.Features)
	}
}

// TestBackfillFeatureServiceErrors: a service and features together, or an
// unknown service, are invalid options, refused before anything is read
// (the spine and the brokers here do not exist).
func TestBackfillFeatureServiceErrors(t *testing.T) {
	cfg := testkit.WriteConfig(t, featureFile, nil)
	for _, tc := range []struct {
		name     string
		features []string
		service  string
		msg      string
	}{
		{"features and a service together", []string{"txn_sum_1d"}, "fraud_scoring", "give either features or a feature service, not both"},
		{"unknown service", nil, "fraud", `unknown feature service "fraud"; did you mean "fraud_scoring"? feature services: fraud_scoring`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Features: tc.features, FeatureService: tc.service,
				Spine: filepath.Join(t.TempDir(), "missing.csv"), Out: filepath.Join(t.TempDir(), "out.csv")}
			_, err := Run(context.Background(), o)
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Run = %v; want ErrInvalidOptions saying %q", err, tc.msg)
			}
			_, err = Compute(context.Background(), o, []Point{{Key: "u", T: 1}})
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Compute = %v; want ErrInvalidOptions saying %q", err, tc.msg)
			}
		})
	}
}
