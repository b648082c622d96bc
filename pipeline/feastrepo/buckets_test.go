package feastrepo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/testkit"
)

// TestBucketedFeaturesAreMaps: a bucketed feature is a Field of type Map
// (Feast's MAP: the lookup service answers a JSON object), imported from
// feast.types only when some field needs it; a bucketed last_k or top_k
// too (a map of lists, not an Array or the String of an unbucketed top_k).
func TestBucketedFeaturesAreMaps(t *testing.T) {
	cfg := testkit.WriteConfig(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
  - {name: s, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: by_currency, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, bucket: currency, window: 7d, owner: t, description: per currency}
  - {name: n_by_currency, version: 1, entity: user, source: transactions, aggregation: count, bucket: currency, window: 7d, owner: t, description: count per currency}
  - {name: last_by_currency, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, bucket: currency, window: 7d, owner: t, description: lists per currency}
  - {name: top_by_currency, version: 1, entity: user, source: transactions, aggregation: top_k, k: 3, field: merchant_id, bucket: currency, window: 7d, owner: t, description: top merchants per currency}
`, nil)
	dir := t.TempDir()
	if err := Write(dir, cfg, Options{URL: "http://127.0.0.1:8080", Flight: "127.0.0.1:8815"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, Definitions))
	if err != nil {
		t.Fatal(err)
	}
	defs := string(b)
	for _, want := range []string{
		"from feast.types import Array, Bool, Float64, Int64, Map, String\n",
		`Field(name="s", dtype=Float64, description="d"),`,
		`Field(name="by_currency", dtype=Map, description="per currency"),`,
		`Field(name="n_by_currency", dtype=Map, description="count per currency"),`,
		`Field(name="last_by_currency", dtype=Map, description="lists per currency"),`,
		`Field(name="top_by_currency", dtype=Map, description="top merchants per currency"),`,
	} {
		if !strings.Contains(defs, want) {
			t.Errorf("%s lacks %q:\n%s", Definitions, want, defs)
		}
	}
}
