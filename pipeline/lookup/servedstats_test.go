package lookup

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

// TestServedStatisticsPerConsumer: two consumers asking for different keys
// get, from the lookup log, different statistics of what they were served,
// each matching the statistics computed directly from the values in their
// responses.
func TestServedStatisticsPerConsumer(t *testing.T) {
	fx, brokers := logFixture(t, 0)
	asks := map[string][]string{ // consumer -> request bodies' keys
		"fraud-api": {`["u1","u2"]`, `["u1"]`, `["u1","u2"]`, `["u1"]`},
		"ranking":   {`["42","u404","u7"]`, `["42"]`, `["42","u404"]`},
	}
	features := []string{"txn_count_7d", "txn_amount_avg@2"}
	served := map[string]map[string][]*float64{} // consumer -> feature id -> values served
	keysServed := 0
	for consumer, bodies := range asks {
		served[consumer] = map[string][]*float64{}
		for _, keys := range bodies {
			rec := fx.doAs(t, consumer, "", `{"entity":"user","keys":`+keys+`,"features":["txn_count_7d","txn_amount_avg@2"]}`)
			if rec.Code != http.StatusOK {
				t.Fatalf("%s: lookup %s: %d %s", consumer, keys, rec.Code, rec.Body)
			}
			var resp LookupResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.Results {
				keysServed++
				for _, name := range features {
					f, err := fx.cfg.Feature(name)
					if err != nil {
						t.Fatal(err)
					}
					fv, ok := r.Features[name]
					if !ok {
						t.Fatalf("%s: no %s in %s", consumer, name, rec.Body)
					}
					served[consumer][f.ID] = append(served[consumer][f.ID], fv.Value)
				}
			}
		}
	}
	// Wait until every key is in the log, then read it as monitor does.
	if entries := consumeLog(t, brokers, fx.cfg.Kafka.LookupLogTopic, keysServed, 20*time.Second); len(entries) != keysServed {
		t.Fatalf("%d lookup-log records, want %d", len(entries), keysServed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := monitor.ReadServed(ctx, kafka.ConnOf(brokers, fx.cfg), fx.cfg.Kafka.LookupLogTopic,
		monitor.ServedOptions{Now: time.UnixMilli(fx.T)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for consumer, byID := range served {
		for id, values := range byID {
			for _, w := range monitor.DefaultServedWindows {
				checkServedStats(t, fmt.Sprintf("%s %s over %s", consumer, id, w), st.Stats(id, consumer, w), values)
			}
		}
	}
	count7d, _ := fx.cfg.Feature("txn_count_7d")
	a, b := st.Stats(count7d.ID, "fraud-api", time.Hour), st.Stats(count7d.ID, "ranking", time.Hour)
	if a == nil || b == nil {
		t.Fatalf("%s: statistics of fraud-api %v, of ranking %v", count7d.ID, a, b)
	}
	if sa, sb := a.Summary(), b.Summary(); sa.Count == sb.Count && *sa.Mean == *sb.Mean {
		t.Errorf("both consumers got the same statistics: %+v", sa)
	}
	if got := st.Consumers(count7d.ID); fmt.Sprint(got) != "[fraud-api ranking]" {
		t.Errorf("consumers %v", got)
	}
}

// checkServedStats compares s with the statistics computed directly from
// values: counts exactly, moments to rounding, quantiles within the
// sketch's 1% of the value at rank floor(q*(n-1)).
func checkServedStats(t *testing.T, what string, s *monitor.Stats, values []*float64) {
	t.Helper()
	if s == nil {
		t.Errorf("%s: no statistics, want %d values", what, len(values))
		return
	}
	var xs []float64
	for _, v := range values {
		if v != nil {
			xs = append(xs, *v)
		}
	}
	sum := s.Summary()
	if sum.Count != int64(len(values)) || sum.Nulls != int64(len(values)-len(xs)) {
		t.Errorf("%s: count %d nulls %d, want %d and %d", what, sum.Count, sum.Nulls, len(values), len(values)-len(xs))
		return
	}
	if len(xs) == 0 {
		if sum.Mean != nil {
			t.Errorf("%s: a mean without values", what)
		}
		return
	}
	slices.Sort(xs)
	mean := 0.0
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if math.Abs(*sum.Mean-mean) > 1e-9*(1+math.Abs(mean)) || *sum.Min != xs[0] || *sum.Max != xs[len(xs)-1] {
		t.Errorf("%s: mean %v min %v max %v, want %v %v %v", what, *sum.Mean, *sum.Min, *sum.Max, mean, xs[0], xs[len(xs)-1])
	}
	for _, q := range monitor.Quantiles {
		name := fmt.Sprintf("p%d", int(math.Round(q*100)))
		want := xs[int(q*float64(len(xs)-1))]
		if got := sum.Quantiles[name]; math.Abs(got-want) > monitor.RelativeAccuracy*math.Abs(want)+1e-12 {
			t.Errorf("%s: %s %v, want %v within 1%%", what, name, got, want)
		}
	}
}
