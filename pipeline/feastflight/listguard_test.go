package feastflight_test

import (
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/feastflight"
)

// TestNewRefusesListFeatures: the Flight server does not carry list values
// (first_k, last_k; Feast's DOUBLE_LIST) yet and refuses such a feature file.
func TestNewRefusesListFeatures(t *testing.T) {
	cfg := testkit.WriteConfig(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
  - {name: s, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: recent, version: 1, entity: user, source: transactions, aggregation: last_k, k: 5, field: amount, window: 30d, owner: t, description: d}
`, nil)
	_, err := feastflight.New(feastflight.Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "feature recent@1 is a list (last_k): feastflight does not carry list values yet") {
		t.Fatalf("New: %v, want the list feature refused", err)
	}
}
