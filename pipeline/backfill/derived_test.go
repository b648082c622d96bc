package backfill

import (
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/schemas"
)

// TestDeriveResults: derived columns are computed from hidden columns of the
// aggregated features they read (directly or through another derived
// feature), each computed once; a derived value is NOT_FOUND where the row's
// entity is unknown, else PRESENT with its value or null, and the aggregated
// columns keep their values and statuses (EXPIRED included).
func TestDeriveResults(t *testing.T) {
	cfg, err := config.Parse("f.yaml", []byte(`entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
  - {name: s, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: a, version: 1, entity: user, source: transactions, aggregation: avg, field: amount, window: 30d, ttl: 7d, owner: t, description: d}
  - {name: ratio, version: 1, entity: user, expression: "s / a", owner: t, description: d}
  - {name: twice, version: 1, entity: user, expression: "ratio * 2.0", owner: t, description: d}
`), schemas.Files, ".")
	if err != nil {
		t.Fatal(err)
	}
	feat := func(ref string) *config.Feature { f, _ := cfg.Feature(ref); return f }
	cols := []column{{name: "twice", feature: feat("twice")}, {name: "a", feature: feat("a")}, {name: "ratio", feature: feat("ratio")}}
	base := expandDerived(cols)
	var names []string
	for _, c := range base {
		names = append(names, c.name)
	}
	if !slices.Equal(names, []string{"a", "s@1"}) {
		t.Fatalf("base columns %v, want the requested a, then s@1 hidden (once, though two derived columns read it)", names)
	}
	// Rows: a known entity (s 30, a 10), one with an expired avg (null), one
	// with a zero avg, an unknown one.
	res := newResults(names, 4)
	res.set(0, 0, 10, true, statusPresent)
	res.set(0, 1, 30, true, statusPresent)
	res.set(1, 0, 0, false, statusExpired)
	res.set(1, 1, 30, true, statusPresent)
	res.set(2, 0, 0, true, statusPresent)
	res.set(2, 1, 5, true, statusPresent)
	res.set(3, 0, 0, false, statusNotFound)
	res.set(3, 1, 0, false, statusNotFound)
	out := deriveResults(cols, base, res)
	type cell struct {
		v      float64
		ok     bool
		status cellStatus
	}
	want := [][]cell{
		{{6, true, statusPresent}, {10, true, statusPresent}, {3, true, statusPresent}},
		{{0, false, statusPresent}, {0, false, statusExpired}, {0, false, statusPresent}}, // null propagates
		{{0, false, statusPresent}, {0, true, statusPresent}, {0, false, statusPresent}},  // 5 / 0: null
		{{0, false, statusNotFound}, {0, false, statusNotFound}, {0, false, statusNotFound}},
	}
	for r, row := range want {
		for c, w := range row {
			i := r*len(cols) + c
			got := cell{out.values[i], out.valid[i], out.status[i]}
			if got.ok != w.ok || got.status != w.status || w.ok && got.v != w.v {
				t.Errorf("row %d column %s: %+v, want %+v", r, cols[c].name, got, w)
			}
		}
	}
	if same := deriveResults(base, base, res); same != res {
		t.Error("without derived columns the results must pass through unchanged")
	}
}
