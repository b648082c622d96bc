package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

// monitorWorker serves a worker's GET /v1/stats for statistics of id made
// of values (nil: a null) against baseline, with the given freshness.
func monitorWorker(t *testing.T, values map[string][]*float64, baselines map[string]monitor.Baseline, fresh map[string]float64) string {
	t.Helper()
	live, err := monitor.NewLive(nil, monitor.LiveOptions{Baselines: baselines})
	if err != nil {
		t.Fatal(err)
	}
	b := live.NewBatch()
	for id, vs := range values {
		name, _, _ := strings.Cut(id, "@")
		for _, v := range vs {
			b.Add(id, name, 1, v)
		}
	}
	if err := live.Commit(b); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(live.Handler(func() map[string]float64 { return fresh }))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func seq(from, n int) []*float64 {
	var out []*float64
	for i := range n {
		v := float64(from + i%100)
		out = append(out, &v)
	}
	return out
}

// TestMonitorCommand: statistics merged over two workers, drift against
// the baseline, freshness from the freshest worker, thresholds from the
// feature file (a feature's block over the file's), exit 2 when crossed.
func TestMonitorCommand(t *testing.T) {
	cfg := testkit.WriteConfig(t, `monitor: {freshness: 10m}
entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
  - {name: amount_last, version: 1, entity: user, source: transactions, aggregation: last, field: amount, window: lifetime, owner: o, description: d}
  - {name: amount_sum, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: o, description: d,
     monitor: {freshness: 1m}}
`, nil)
	base := monitor.NewStats()
	for _, v := range seq(0, 1000) {
		base.AddValue(*v)
	}
	baselines := map[string]monitor.Baseline{"amount_last@1": {Name: "train@1", Stats: base}}
	run1 := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"monitor", "--config", cfg.Path}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}

	// As trained, fresh enough (the freshest worker counts): exit 0.
	w1 := monitorWorker(t, map[string][]*float64{"amount_last@1": seq(0, 100), "amount_sum@1": seq(0, 50)}, baselines,
		map[string]float64{"amount_last@1": 5, "amount_sum@1": 3000})
	w2 := monitorWorker(t, map[string][]*float64{"amount_last@1": seq(0, 100), "amount_sum@1": seq(0, 50)}, baselines,
		map[string]float64{"amount_last@1": 700, "amount_sum@1": 30})
	code, out, errs := run1("--workers", w1+","+w2)
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, "amount_last@1  200") || !strings.Contains(out, "train@1") {
		t.Fatalf("table does not show 200 merged values against train@1:\n%s", out)
	}
	if strings.Contains(out, "DISTRIBUTION") {
		t.Fatalf("sparklines when the output is not a terminal:\n%s", out)
	}
	// --sparkline always: the values between p1 and p99 as a histogram, the
	// merged statistics' (both workers' values).
	code, spark, errs := run1("--workers", w1+","+w2, "--sparkline", "always")
	merged := monitor.NewStats()
	for _, v := range append(seq(0, 100), seq(0, 100)...) {
		merged.AddValue(*v)
	}
	h, _ := merged.Histogram(monitor.HistogramBins)
	if code != 0 || !strings.Contains(spark, "DISTRIBUTION (P1 TO P99)") || !strings.Contains(spark, monitor.SparklineCell(&h)) ||
		strings.Count(spark, " |") != 4 { // both versions, each in both windows
		t.Fatalf("--sparkline always: exit %d, want the row's cell %q:\n%s%s", code, monitor.SparklineCell(&h), spark, errs)
	}
	if code, _, errs := run1("--workers", w1, "--sparkline", "sometimes"); code != 2 || !strings.Contains(errs, "auto, always or never") {
		t.Fatalf("--sparkline sometimes: exit %d %s", code, errs)
	}
	// The workers' 24h window too (the same values: they were all observed now).
	if !strings.Contains(out, "  over 24h     200") || !strings.Contains(out, "(and 24h0m0s, not checked") {
		t.Fatalf("table does not show the 24h window:\n%s", out)
	}

	// Shifted values, a stale amount_sum (1m threshold) and nulls: exit 2.
	nulls := append(seq(0, 50), make([]*float64, 50)...)
	w3 := monitorWorker(t, map[string][]*float64{"amount_last@1": seq(500, 200), "amount_sum@1": nulls}, baselines,
		map[string]float64{"amount_last@1": 1, "amount_sum@1": 90})
	code, out, errs = run1("--workers", w3, "--json")
	if code != 2 || !strings.Contains(errs, "2 feature version(s) crossed") {
		t.Fatalf("exit %d, want 2:\n%s%s", code, out, errs)
	}
	var rep struct {
		Features []monitor.FeatureReport `json:"features"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, r := range rep.Features {
		got[r.ID] = strings.Join(r.Crossed, ",")
	}
	if got["amount_last@1"] != "psi" || got["amount_sum@1"] != "freshness,null_rate" {
		t.Fatalf("crossed %v, want amount_last@1: psi; amount_sum@1: freshness, null_rate", got)
	}
	if r := rep.Features[0]; r.PSI == nil || *r.PSI < 1 || r.Thresholds.Freshness != (10*time.Minute).Seconds() {
		t.Fatalf("amount_last@1 report %+v", r)
	}
	if h := rep.Features[0].Histogram; h == nil || len(h.Counts) != monitor.HistogramBins || rep.Features[0].Summary.Quantiles["p1"] != h.Lo {
		t.Fatalf("amount_last@1 histogram %+v", h)
	}
	if lw := rep.Features[1].LongWindow; lw == nil || lw.Window != "24h0m0s" || lw.Summary.Count != 100 || lw.Summary.Nulls != 50 {
		t.Fatalf("amount_sum@1 over 24h: %+v, want 100 values, 50 nulls", lw)
	}

	// --feature picks one; an unknown one is a usage error.
	if code, out, _ := run1("--workers", w3, "--feature", "amount_sum"); code != 2 || strings.Contains(out, "amount_last") {
		t.Fatalf("--feature amount_sum: exit %d\n%s", code, out)
	}
	if code, _, errs := run1("--workers", w3, "--feature", "nope"); code != 2 || !strings.Contains(errs, "no such feature") {
		t.Fatalf("--feature nope: exit %d %s", code, errs)
	}
}

// TestMonitorServedPerConsumer: with --brokers, monitor adds the values
// served to each consumer (from the lookup log) with their drift against
// the same baseline; a consumer served shifted values crosses the PSI
// threshold (exit 2) while the published values do not.
func TestMonitorServedPerConsumer(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, testkit.KafkaSection(2)+`entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: amount_last, version: 1, entity: user, source: transactions, aggregation: last, field: amount, window: lifetime, owner: o, description: d}
`, testkit.SetupOptions{})
	base := monitor.NewStats()
	for _, v := range seq(0, 1000) {
		base.AddValue(*v)
	}
	baselines := map[string]monitor.Baseline{"amount_last@1": {Name: "train@1", Stats: base}}
	w := monitorWorker(t, map[string][]*float64{"amount_last@1": seq(0, 200)}, baselines, nil)

	// fraud-api is served what the model was trained on, ranking values
	// shifted by half the range, plus a null; an entry older than 24h counts nowhere.
	now := time.Now()
	ctx := context.Background()
	produce := func(consumer string, at time.Time, vals []*float64) {
		for i, v := range vals {
			e := lookuplog.Entry{Entity: "user", Key: fmt.Sprintf("%s-%d", consumer, i), At: at.UnixMilli(), Consumer: consumer,
				Features: map[string]*float64{"amount_last@1": v}}
			b, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			cl.Produce(ctx, &kgo.Record{Topic: cfg.Kafka.LookupLogTopic, Key: []byte(e.Key), Value: b}, nil)
		}
	}
	produce("fraud-api", now.Add(-time.Minute), seq(0, 300))
	produce("ranking", now.Add(-2*time.Hour), append(seq(50, 200), nil))
	produce("ranking", now.Add(-30*time.Hour), seq(0, 500))
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run(ctx, []string{"monitor", "--config", cfg.Path, "--workers", w, "--brokers", strings.Join(k.Brokers, ","), "--json"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "1 feature version(s) crossed") {
		t.Fatalf("exit %d, want 2 (ranking's served values drifted):\n%s%s", code, out.String(), errb.String())
	}
	var rep struct {
		Features []monitor.FeatureReport `json:"features"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, out.String())
	}
	if len(rep.Features) != 1 || len(rep.Features[0].Crossed) != 0 {
		t.Fatalf("published values: %+v, want one version crossing nothing", rep.Features)
	}
	var got []string
	for _, s := range rep.Features[0].Served {
		got = append(got, fmt.Sprintf("%s/%s:%d values %d nulls, baseline %s, crossed %v", s.Consumer, s.Window, s.Summary.Count, s.Summary.Nulls, s.Baseline, s.Crossed))
	}
	want := []string{
		"fraud-api/1h0m0s:300 values 0 nulls, baseline train@1, crossed []",
		"fraud-api/24h0m0s:300 values 0 nulls, baseline train@1, crossed []",
		"ranking/24h0m0s:201 values 1 nulls, baseline train@1, crossed [psi]",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("served reports\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// --consumer keeps one consumer's rows (and its verdict).
	out.Reset()
	code = run(ctx, []string{"monitor", "--config", cfg.Path, "--workers", w, "--brokers", strings.Join(k.Brokers, ","), "--consumer", "fraud-api", "--json"}, &out, &errb)
	rep.Features = nil
	if err := json.Unmarshal(out.Bytes(), &rep); code != 0 || err != nil || len(rep.Features[0].Served) != 2 || rep.Features[0].Served[1].Consumer != "fraud-api" {
		t.Fatalf("--consumer fraud-api: exit %d, %v:\n%s", code, err, out.String())
	}

	errb.Reset()
	if code := run(ctx, []string{"monitor", "--config", cfg.Path, "--workers", w, "--consumer", "fraud-api"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--consumer needs --brokers") {
		t.Fatalf("--consumer without --brokers: exit %d %s", code, errb.String())
	}

	// The table shows a row per consumer and window under the feature.
	out.Reset()
	run(ctx, []string{"monitor", "--config", cfg.Path, "--workers", w, "--brokers", strings.Join(k.Brokers, ",")}, &out, &errb)
	if !strings.Contains(out.String(), "served to ranking (24h)") || !strings.Contains(out.String(), "served to fraud-api (1h)") {
		t.Fatalf("table without served rows:\n%s", out.String())
	}
}

// TestMonitorShowsListStatistics: a list feature's lengths and most
// frequent elements, merged over two workers, in the table's footer and
// in --json.
func TestMonitorShowsListStatistics(t *testing.T) {
	cfg := testkit.WriteConfig(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
  - {name: amount_last3, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, window: 1d, owner: o, description: d}
`, nil)
	worker := func(lists ...[]float64) string {
		live, err := monitor.NewLive(nil, monitor.LiveOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b := live.NewBatch()
		for _, l := range lists {
			b.Stats("amount_last3@1", "amount_last3", 1).AddList(l, true)
		}
		if err := live.Commit(b); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(live.Handler(nil))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	addrs := worker([]float64{42, 42, 7}, []float64{42}) + "," + worker([]float64{42, 7, 1.5}, []float64{9, 9})
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"monitor", "--config", cfg.Path, "--workers", addrs, "--sparkline", "never"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errb.String())
	}
	if want := `amount_last3@1: lists of 1-3 (mean 2.25); top: "42" ×4, "7" ×2, "9" ×2, "1.5" ×1`; !strings.Contains(out.String(), want) {
		t.Errorf("text output lacks %q:\n%s", want, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"monitor", "--config", cfg.Path, "--workers", addrs, "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var got struct {
		Features []struct {
			Statistics monitor.Summary `json:"statistics"`
		} `json:"features"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Features) != 1 {
		t.Fatalf("features %+v", got.Features)
	}
	s := got.Features[0].Statistics
	if s.Kind != monitor.KindList || s.Count != 4 || s.Elements != 9 || s.Length == nil || *s.Length.Max != 3 ||
		len(s.Top) != 4 || s.Top[0] != (monitor.TopValue{Value: "42", Count: 4}) || s.TopError != 0 {
		t.Errorf("JSON statistics %+v: want 4 lists, 9 elements, 42 four times first", s)
	}
}
