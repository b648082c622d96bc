package feastrepo

import (
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/testkit"
)

// TestListFeaturesAreRefused: the generated repository has no list field
// type yet (Feast Array(Float64)), so a list feature fails the generation.
func TestListFeaturesAreRefused(t *testing.T) {
	cfg := testkit.WriteConfig(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
  - {name: s, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: recent, version: 1, entity: user, source: transactions, aggregation: last_k, k: 5, field: amount, window: 30d, owner: t, description: d}
`, nil)
	err := Write(t.TempDir(), cfg, Options{URL: "http://127.0.0.1:8080", Flight: "127.0.0.1:8815"})
	if err == nil || !strings.Contains(err.Error(), "feature recent@1 is a list (last_k): the Feast repository does not carry list values yet") {
		t.Fatalf("Write: %v, want the list feature refused", err)
	}
}
