package backfill

import (
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/schemas"
)

// TestSweeperSharesSeries: columns of one source, window (size, hop) and
// field without a where read one series; a different hop, field, source or
// a where keeps a column's own, and so does every column when snapshots
// seed the state (share false). The values of shared columns are checked
// against the brute force by the backfill tests (txn_avg_30d and
// txn_min_7d share a 7d/1h series over amount there).
func TestSweeperSharesSeries(t *testing.T) {
	cfg, err := config.Parse("f.yaml", []byte(`entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
  - {name: logins, topic: lg, schema: login.avsc, event_time: ts}
features:
  - {name: avg7, version: 1, entity: user, source: transactions, aggregation: avg, field: amount, window: 7d, hop: 1h, owner: t, description: d}
  - {name: min7, version: 1, entity: user, source: transactions, aggregation: min, field: amount, window: 7d, hop: 1h, owner: t, description: d}
  - {name: max7h6, version: 1, entity: user, source: transactions, aggregation: max, field: amount, window: 7d, hop: 6h, owner: t, description: d}
  - {name: count7, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, hop: 1h, owner: t, description: d}
  - {name: big7, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, hop: 1h, where: "amount > 10.0", owner: t, description: d}
  - {name: sum7, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, hop: 1h, owner: t, description: d}
  - {name: logins7, version: 1, entity: user, source: logins, aggregation: count, window: 7d, hop: 1h, owner: t, description: d}
  - {name: count7b, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, hop: 1h, owner: t, description: d}
`), schemas.Files, ".")
	if err != nil {
		t.Fatal(err)
	}
	var cols []column
	for _, n := range []string{"avg7", "min7", "max7h6", "count7", "big7", "sum7", "logins7", "count7b"} {
		f, err := cfg.Feature(n)
		if err != nil {
			t.Fatal(err)
		}
		cols = append(cols, column{name: n, feature: f})
	}
	srcs, err := planSources(cfg, cols, []int64{1e12}, 0)
	if err != nil {
		t.Fatal(err)
	}
	sw := newSweeper(len(srcs), cols, true)
	if want := []int{0, 0, 2, 3, 4, 0, 6, 3}; !slices.Equal(sw.owner, want) {
		t.Errorf("owners %v, want %v (min7 and sum7 read avg7's series, count7b count7's)", sw.owner, want)
	}
	if want := []int{0, 2, 3, 4}; !slices.Equal(sw.srcCols[cols[0].src], want) {
		t.Errorf("transactions apply to columns %v, want the owners %v", sw.srcCols[cols[0].src], want)
	}
	sw = newSweeper(len(srcs), cols, false)
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7}; !slices.Equal(sw.owner, want) {
		t.Errorf("without sharing: owners %v, want every column its own", sw.owner)
	}
}
