package backfill

import (
	"context"
	"errors"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
)

// TestComputeMatchesBruteForce: an in-memory spine gives the brute-force
// value of every requested feature for every point, in point order, in both
// point-in-time modes (the same engine as Run, without files).
func TestComputeMatchesBruteForce(t *testing.T) {
	s := newScenario(t, 5)
	refs := []string{"txn_avg_30d@1", "txn_avg_30d@2", "txn_count_7d", "txn_min_7d", "txn_last", "login_count_1h",
		"txn_stddev_7d", "txn_var_samp_30d", "txn_first", "txn_distinct_30d", "txn_p95_7d"}
	points := make([]Point, len(s.rows))
	for i, r := range s.rows {
		points[i] = Point{Key: r.key, T: r.T}
	}
	for _, mode := range []Mode{ModeEvent, ModeArrival} {
		t.Run(string(mode), func(t *testing.T) {
			v, err := Compute(context.Background(), Options{Brokers: s.brokers, Config: s.cfg, Features: refs, Mode: mode}, points)
			if err != nil {
				t.Fatal(err)
			}
			if v.Rows() != len(points) || len(v.Columns) != len(refs) || len(v.Features) != len(refs) ||
				v.Features[0].ID != "txn_avg_30d@1" || v.Features[1].ID != "txn_avg_30d@2" {
				t.Fatalf("%d rows, columns %v: want %d rows and one column per reference, in order", v.Rows(), v.Columns, len(points))
			}
			if v.Events.Records == 0 || len(v.Sources) == 0 {
				t.Fatalf("nothing replayed: %+v", v.Events)
			}
			bad := 0
			for c, f := range v.Features {
				for i, r := range s.rows {
					want, ok := s.want(f, r, mode)
					got, gotOK := v.Get(i, c)
					if gotOK != ok || (ok && !aggtest.Within(f.Aggregation, got, want)) {
						if bad++; bad <= 10 {
							t.Errorf("point %d (%s at %d) %s = %v (ok %v), want %v (ok %v)", i, r.key, r.T, f.ID, got, gotOK, want, ok)
						}
					}
				}
			}
			if bad > 0 {
				t.Fatalf("%d values differ", bad)
			}
		})
	}
}

func TestComputeValidatesOptions(t *testing.T) {
	cfg := testkit.WriteConfig(t, featureFile, nil)
	for name, tc := range map[string]struct {
		o      Options
		points []Point
	}{
		"features are required":   {Options{Brokers: []string{"x:1"}, Config: cfg}, []Point{{"u", 1}}},
		"a key must not be empty": {Options{Brokers: []string{"x:1"}, Config: cfg, Features: []string{"txn_last"}}, []Point{{"", 1}}},
		"brokers are required":    {Options{Config: cfg, Features: []string{"txn_last"}}, []Point{{"u", 1}}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Compute(context.Background(), tc.o, tc.points); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("err = %v, want ErrInvalidOptions", err)
			}
		})
	}
}
