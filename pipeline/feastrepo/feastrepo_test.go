package feastrepo

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite pipeline/feastrepo/testdata/*.golden with the generated files")

const featureFile = `kafka:
  feature_log_topic: features
entities:
  - name: user
    key: user_id
  - name: merchant
    key: merchant_id
sources:
  - name: transactions
    topic: transactions
    schema: transaction.avsc
    event_time: ts
  - name: logins
    topic: logins
    schema: login.avsc
    event_time: ts
features:
  - {name: txn_amount_avg, version: 1, entity: user, source: transactions, aggregation: avg, field: amount, window: 30d, owner: t, description: "Average \"amount\", 30 days."}
  - {name: txn_amount_avg, version: 2, entity: user, source: transactions, aggregation: avg, field: amount, window: 7d, owner: t, description: "Average amount, 7 days."}
  - {name: txn_count_7d, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, owner: t, description: d}
  - {name: login_count_1h, version: 1, entity: user, source: logins, aggregation: count, window: 1h, owner: t, description: d}
services:
  - name: fraud_scoring
    owner: fraud-team
    description: Features of the "card-fraud" model.
    features: [txn_count_7d@1, login_count_1h, txn_amount_avg@2]
  - name: legacy_model
    owner: t
    description: Pins an older version.
    features: [txn_amount_avg@1]
`

// TestWriteGolden: one FeatureView per source with a typed Field per
// feature name (versions collapse to the name), the entity with its join
// key, the remote stores, and a FeatureService per expressible feature
// service (projections of several views); a service pinning a version other
// than the one a bare name reads is not generated, with the reason in a
// comment and in Options.Warn. The output is pinned by golden files.
func TestWriteGolden(t *testing.T) {
	cfg := testkit.WriteConfig(t, featureFile, nil)
	dir := t.TempDir()
	var warned []string
	if err := Write(dir, cfg, Options{URL: "http://127.0.0.1:8080", Flight: "127.0.0.1:8815",
		Warn: func(msg string) { warned = append(warned, msg) }}); err != nil {
		t.Fatal(err)
	}
	wantWarn := "feature service legacy_model is not generated: it lists txn_amount_avg@1, but feature view transactions's field txn_amount_avg reads txn_amount_avg@2"
	if len(warned) != 1 || !strings.HasPrefix(warned[0], wantWarn) {
		t.Errorf("warnings %q, want one starting %q", warned, wantWarn)
	}
	for _, name := range []string{StoreYAML, Definitions} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", name+".golden")
		if *update {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (go test ./pipeline/feastrepo -update writes it)", err)
		}
		if string(got) != string(want) {
			t.Errorf("%s differs from %s:\n%s", name, golden, got)
		}
	}
	defs, err := os.ReadFile(filepath.Join(dir, Definitions))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`features=[view_transactions[["txn_count_7d", "txn_amount_avg"]], view_logins[["login_count_1h"]]],`,
		"# " + wantWarn,
	} {
		if !strings.Contains(string(defs), want) {
			t.Errorf("%s lacks %s", Definitions, want)
		}
	}
	if strings.Contains(string(defs), `name="legacy_model"`) {
		t.Errorf("%s defines legacy_model, which its views cannot express", Definitions)
	}
	if fi, err := os.Stat(filepath.Join(dir, "data")); err != nil || !fi.IsDir() {
		t.Errorf("the registry's directory data/ was not created: %v", err)
	}
}

func TestWriteRefusesWhatFeastCannotUse(t *testing.T) {
	cfg := testkit.WriteConfig(t, featureFile, nil)
	ok := Options{URL: "http://127.0.0.1:8080", Flight: "127.0.0.1:8815"}
	for name, tc := range map[string]struct {
		o   Options
		msg string
	}{
		"no URL":              {Options{Flight: ok.Flight}, `lookup URL "": want http://host:port`},
		"URL without scheme":  {Options{URL: "127.0.0.1:8080", Flight: ok.Flight}, `lookup URL "127.0.0.1:8080": want http://host:port`},
		"no flight address":   {Options{URL: ok.URL}, `flight address "": want host:port`},
		"flight without port": {Options{URL: ok.URL, Flight: "localhost"}, `flight address "localhost": want host:port`},
		"project with a dash": {Options{URL: ok.URL, Flight: ok.Flight, Project: "my-project"}, `project "my-project": use letters, digits and underscores`},
	} {
		t.Run(name, func(t *testing.T) {
			err := Write(t.TempDir(), cfg, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
}
