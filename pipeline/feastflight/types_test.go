package feastflight

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/featurepipe/featurepipe/internal/testkit"
)

// TestOutTypesFollowTheFeatureOutputType: the Arrow column of a last,
// first, first_k or last_k feature has its field's type (int64, bool, or a
// list of them), as feast-repo declares it (Int64, Bool, Array(...)).
func TestOutTypesFollowTheFeatureOutputType(t *testing.T) {
	cfg := testkit.WriteConfig(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: logins, topic: lg, schema: login.avsc, event_time: ts}
features:
  - {name: last_ts, version: 1, entity: user, source: logins, aggregation: last, field: ts, window: 1d, owner: t, description: d}
  - {name: first_ok, version: 1, entity: user, source: logins, aggregation: first, field: success, window: 1d, owner: t, description: d}
  - {name: ts3, version: 1, entity: user, source: logins, aggregation: last_k, k: 3, field: ts, window: 1d, owner: t, description: d}
  - {name: ok3, version: 1, entity: user, source: logins, aggregation: first_k, k: 3, field: success, window: 1d, owner: t, description: d}
  - {name: n, version: 1, entity: user, source: logins, aggregation: count, window: 1d, owner: t, description: d}
  - {name: countries, version: 1, entity: user, source: logins, aggregation: approx_distinct, field: country, window: 1d, owner: t, description: d}
  - {name: last_country, version: 1, entity: user, source: logins, aggregation: last, field: country, window: 1d, owner: t, description: d}
  - {name: countries3, version: 1, entity: user, source: logins, aggregation: last_k, k: 3, field: country, window: 1d, owner: t, description: d}
`, nil)
	want := map[string]arrow.DataType{
		"last_ts":   arrow.PrimitiveTypes.Int64,
		"first_ok":  arrow.FixedWidthTypes.Boolean,
		"ts3":       arrow.ListOf(arrow.PrimitiveTypes.Int64),
		"ok3":       arrow.ListOf(arrow.FixedWidthTypes.Boolean),
		"n":         arrow.PrimitiveTypes.Int64,
		"countries": arrow.PrimitiveTypes.Float64,
		// Feast's String and Array(String).
		"last_country": arrow.BinaryTypes.String,
		"countries3":   arrow.ListOf(arrow.BinaryTypes.String),
	}
	for _, f := range cfg.Features {
		if got := outType(f); !arrow.TypeEqual(got, want[f.Name]) {
			t.Errorf("%s: %v, want %v", f.Name, got, want[f.Name])
		}
	}
}
