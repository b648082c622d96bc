package lookup

import (
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
)

// TestNewRefusesListFeatures: the lookup service does not serve list values
// (first_k, last_k) yet, so it refuses to start on a feature file with one,
// naming it, rather than answer null for it.
func TestNewRefusesListFeatures(t *testing.T) {
	cfg := testkit.WriteConfig(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
  - {name: s, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: recent, version: 1, entity: user, source: transactions, aggregation: last_k, k: 5, field: amount, window: 30d, owner: t, description: d}
`, nil)
	st, err := state.Open(t.TempDir(), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: st, LookupLogSample: NoLookupLog})
	if err == nil || !strings.Contains(err.Error(), "feature recent@1 is a list (last_k): lookup does not carry list values yet") {
		t.Fatalf("New: %v, want the list feature refused", err)
	}
}
