package backfill

import (
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/schemas"
)

// TestListFeaturesAreRefused: backfill does not write list values yet, so a
// list feature (last_k), requested or picked by default, fails with an error
// naming it instead of a column of nulls; the other features still resolve.
func TestListFeaturesAreRefused(t *testing.T) {
	cfg, err := config.Parse("f.yaml", []byte(`entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
  - {name: s, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: recent, version: 1, entity: user, source: transactions, aggregation: last_k, k: 5, field: amount, window: 30d, owner: t, description: d}
`), schemas.Files, ".")
	if err != nil {
		t.Fatal(err)
	}
	sp := &spine{path: "spine.csv", columns: []string{"user_id", "ts"}}
	for _, refs := range [][]string{{"recent"}, {"s", "recent@1"}, nil} {
		_, _, err := resolveColumns(cfg, refs, sp)
		if err == nil || !strings.Contains(err.Error(), "feature recent@1 is a list (last_k): backfill (Parquet/CSV) does not carry list values yet") {
			t.Errorf("features %v: error %v, want the list refused", refs, err)
		}
	}
	if _, cols, err := resolveColumns(cfg, []string{"s"}, sp); err != nil || len(cols) != 1 {
		t.Errorf("features [s]: %v, %v", cols, err)
	}
}
