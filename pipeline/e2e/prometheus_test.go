package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// PrometheusTestEnv set to 1 (make test-monitoring sets it) runs
// TestMonitoringOnPrometheus, which then fails, never skips, when the
// prometheus binary is missing.
const PrometheusTestEnv = "FEATUREPIPE_TEST_PROMETHEUS"

var (
	alertsFile    = filepath.Join("..", "..", "deploy", "prometheus", "alerts.yml")
	alertsTests   = filepath.Join("..", "..", "deploy", "prometheus", "alerts_test.yml")
	dashboardFile = filepath.Join("..", "..", "deploy", "grafana", "dashboards", "featurepipe.json")
	metricName    = regexp.MustCompile(`featurepipe_[a-z0-9_]+`)
)

type alertRule struct {
	Alert string `yaml:"alert"`
	Expr  string `yaml:"expr"`
}

// alertRules parses deploy/prometheus/alerts.yml.
func alertRules(t testing.TB) []alertRule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no rules", alertsFile)
	}
	return out
}

type dashPanel struct {
	Title   string      `json:"title"`
	Panels  []dashPanel `json:"panels"` // rows
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// dashboardQueries parses the Grafana dashboard: every target's expression
// by panel title, with Grafana's $__rate_interval as window (Prometheus
// scrapes every second in the test).
func dashboardQueries(t testing.TB, window string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []dashPanel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	out := map[string][]string{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, tg := range p.Targets {
				out[p.Title] = append(out[p.Title], strings.ReplaceAll(tg.Expr, "$__rate_interval", window))
			}
		}
	}
	walk(d.Panels)
	if len(out) == 0 {
		t.Fatalf("%s: no queries", dashboardFile)
	}
	return out
}

// TestEveryAlertRuleHasAUnitTest: every rule of alerts.yml is named in
// alerts_test.yml, which promtool runs (make test-monitoring).
func TestEveryAlertRuleHasAUnitTest(t *testing.T) {
	b, err := os.ReadFile(alertsTests)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range alertRules(t) {
		if !strings.Contains(string(b), "alertname: "+r.Alert+",") && !strings.Contains(string(b), "alertname: "+r.Alert+"\n") {
			t.Errorf("alert %s has no test in %s", r.Alert, alertsTests)
		}
	}
}

// prometheus is a Prometheus server the test started.
type prometheusServer struct {
	url string
}

// startPrometheus runs the prometheus binary scraping targets (job name ->
// host:port) every second with the alert rules of alerts.yml evaluated
// every second, on a free loopback port and a temporary TSDB, until the
// test ends.
func startPrometheus(t *testing.T, targets map[string]string) *prometheusServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("%s is set but the prometheus binary is not on PATH (apt-get install -y prometheus): %v", PrometheusTestEnv, err)
	}
	rules, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%q]\nscrape_configs:\n", rules)
	jobs := make([]string, 0, len(targets))
	for j := range targets {
		jobs = append(jobs, j)
	}
	sort.Strings(jobs)
	for _, j := range jobs {
		fmt.Fprintf(&cfg, "  - job_name: %s\n    static_configs: [{targets: [%q]}]\n", j, targets[j])
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--storage.tsdb.retention.time=1h")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("prometheus log (tail):\n%s", tail(string(b), 3000))
			}
		}
	})
	p := &prometheusServer{url: "http://" + addr}
	waitFor(t, "prometheus ready", 60*time.Second, func() bool {
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// promSample is one element of an instant-query vector.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant PromQL query, failing the test on an error answer
// (a malformed expression).
func (p *prometheusServer) query(t testing.TB, expr string) []promSample {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	if out.Status != "success" {
		t.Fatalf("query %s: %s", expr, out.Error)
	}
	return out.Data.Result
}

// hasData reports whether the vector has a sample with a number (not NaN).
func hasData(v []promSample) bool {
	for _, s := range v {
		if str, ok := s.Value[1].(string); ok && str != "NaN" {
			return true
		}
	}
	return false
}

type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p *prometheusServer) alerts(t testing.TB) []promAlert {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Alerts []promAlert `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Data.Alerts
}

// ruleNames returns the alerting rules Prometheus loaded.
func (p *prometheusServer) ruleNames(t testing.TB) []string {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name   string `json:"name"`
					Health string `json:"health"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range out.Data.Groups {
		for _, r := range g.Rules {
			if r.Health == "err" {
				t.Errorf("rule %s: evaluation error", r.Name)
			}
			names = append(names, r.Name)
		}
	}
	return names
}

// TestMonitoringOnPrometheus runs a pipeline (embedded broker, a worker, a
// lookup replica) with traffic (events of two sources, junk records, lookups
// by several consumers), lets a real Prometheus scrape it with the alert
// rules of deploy/prometheus/alerts.yml, and checks through Prometheus's HTTP
// API that every expression of the Grafana dashboard returns data, that every
// metric the alert rules use exists, that FeaturepipeFeatureStale fires for
// the feature of a source that stops, and only for it, and that
// FeaturepipeFeatureDrift fires when the values of a feature with a training
// baseline shift, and not before. Run by make
// test-monitoring (FEATUREPIPE_TEST_PROMETHEUS=1); skipped otherwise.
func TestMonitoringOnPrometheus(t *testing.T) {
	if os.Getenv(PrometheusTestEnv) != "1" {
		t.Skipf("set %s=1 (make test-monitoring) to run it against a real Prometheus", PrometheusTestEnv)
	}
	k, cfg, cl := setup(t, featureFile)
	dir := t.TempDir()

	wreg := metrics.NewRegistry()
	wst, err := state.Open(filepath.Join(dir, "w"), state.Options{NoSync: true, Registerer: wreg, Name: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	// txn_last's training baseline: amounts uniform over 0..99, as the
	// traffic below sends until it shifts them.
	baseline := monitor.NewStats()
	for v := range 100 {
		for range 10 {
			baseline.AddValue(float64(v))
		}
	}
	stats, err := monitor.NewLive(wreg, monitor.LiveOptions{Baselines: map[string]monitor.Baseline{"txn_last@1": {Name: "train@1", Stats: baseline}}})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Options{Brokers: k.Brokers, Config: cfg, Store: wst, Registerer: wreg, PublishInterval: 100 * time.Millisecond, Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	t.Cleanup(func() {
		wcancel()
		if err := <-wdone; err != nil {
			t.Errorf("worker: %v", err)
		}
		wst.Close()
	})
	wsrv := httptest.NewServer(metrics.Handler(wreg))
	t.Cleanup(wsrv.Close)

	lreg := metrics.NewRegistry()
	lst, err := lookup.OpenStore(filepath.Join(dir, "view"), state.Options{NoSync: true, Registerer: lreg, Name: "view"})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := lookup.New(lookup.Options{Brokers: k.Brokers, Config: cfg, Store: lst, Registerer: lreg})
	if err != nil {
		t.Fatal(err)
	}
	ls := serveLookup(t, svc, lst)
	waitFor(t, "lookup ready", 60*time.Second, ls.ready)

	prom := startPrometheus(t, map[string]string{
		"featurepipe-worker": strings.TrimPrefix(wsrv.URL, "http://"),
		"featurepipe-lookup": strings.TrimPrefix(ls.url, "http://"),
	})

	// Traffic until the test ends: every 200ms an event of each source
	// (logins with event times 4.5 minutes old, a producer that lags but
	// within the 5-minute freshness alert; transactions with amounts
	// uniform over 0..99, as txn_last's baseline), a junk record every
	// second, and lookups by two consumers on two routes. Once shift is
	// closed, logins stop and transaction amounts move to 1000..1099.
	encs := map[string]*produce.Encoder{}
	for _, src := range []string{"transactions", "logins"} {
		if encs[src], err = produce.NewEncoder(cfg, src); err != nil {
			t.Fatal(err)
		}
	}
	shift := make(chan struct{})
	var shifted sync.WaitGroup
	shifted.Add(1)
	tctx, tcancel := context.WithCancel(context.Background())
	var traffic sync.WaitGroup
	traffic.Add(1)
	go func() {
		defer traffic.Done()
		normal := true
		for i := 0; tctx.Err() == nil; i++ {
			if normal {
				select {
				case <-shift:
					normal = false
					shifted.Done()
				default:
				}
			}
			now := time.Now()
			user := fmt.Sprintf("user-%03d", i%50)
			amount := float64(i % 100)
			evs := []event{}
			if normal {
				evs = append(evs, event{"logins", user, now.Add(-270 * time.Second).UnixMilli(), 0})
			} else {
				amount += 1000
			}
			evs = append(evs, event{"transactions", user, now.Add(-time.Second).UnixMilli(), amount})
			// Not produceAt: t.Fatal is for the test's goroutine. A failed
			// produce shows as missing data below.
			var recs []*kgo.Record
			for _, e := range evs {
				if r, err := encs[e.source].Record(testkit.Event(e.source, e.key, e.ts, e.amount)); err == nil {
					recs = append(recs, r)
				}
			}
			_ = cl.ProduceSync(tctx, recs...).FirstErr()
			if i%5 == 0 {
				_ = cl.ProduceSync(tctx, &kgo.Record{Topic: cfg.Sources[0].Topic, Key: []byte("user-001"), Value: []byte("junk")}).FirstErr()
			}
			for _, consumer := range []string{"fraud-model", "ranking"} {
				body := fmt.Sprintf(`{"entity":"user","keys":[%q],"features":["txn_sum_1d","login_count_1h"]}`, user)
				req, _ := http.NewRequestWithContext(tctx, http.MethodPost, ls.url+"/v1/lookup", strings.NewReader(body))
				req.Header.Set(lookup.ConsumerHeader, consumer)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}
			if resp, err := http.Get(ls.url + "/v1/features/user/user-001"); err == nil {
				resp.Body.Close()
			}
			select {
			case <-tctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { tcancel(); traffic.Wait() })

	// The rules Prometheus loaded are exactly those of alerts.yml.
	rules := alertRules(t)
	var want []string
	for _, r := range rules {
		want = append(want, r.Alert)
	}
	got := prom.ruleNames(t)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("Prometheus loaded rules %v, want those of %s: %v", got, alertsFile, want)
	}

	// Every dashboard expression returns data (30s windows: scraped every second).
	queries := dashboardQueries(t, "30s")
	for title, exprs := range queries {
		for _, expr := range exprs {
			waitFor(t, fmt.Sprintf("dashboard panel %q: %s returns data", title, expr), 120*time.Second, func() bool {
				return hasData(prom.query(t, expr))
			})
		}
	}
	// Every metric an alert rule uses exists, and every rule's expression is
	// valid PromQL (query fails the test otherwise).
	for _, r := range rules {
		prom.query(t, r.Expr)
		for _, m := range metricName.FindAllString(r.Expr, -1) {
			waitFor(t, fmt.Sprintf("alert %s: metric %s has series", r.Alert, m), 60*time.Second, func() bool {
				return len(prom.query(t, fmt.Sprintf("count({__name__=%q})", m))) > 0
			})
		}
	}
	// Nothing is stale, nothing drifts while the traffic is as trained.
	for _, a := range prom.alerts(t) {
		if n := a.Labels["alertname"]; n == "FeaturepipeFeatureStale" || n == "FeaturepipeFeatureDrift" {
			t.Fatalf("%s %s before the shift: %v", n, a.State, a.Labels)
		}
	}
	if v := prom.query(t, `featurepipe_feature_drift_psi{feature="txn_last"}`); !hasData(v) {
		t.Fatal("no PSI for txn_last")
	} else {
		t.Logf("txn_last PSI before the shift: %v", v[0].Value[1])
	}

	// Logins stop and transaction amounts shift: login_count_1h's
	// freshness passes 5 minutes within about 30s and, after the rule's 1
	// minute, FeaturepipeFeatureStale fires for it (never for the running
	// transactions features); txn_last's PSI passes 0.2 and, after 2
	// minutes, FeaturepipeFeatureDrift fires for it.
	close(shift)
	shifted.Wait()
	shiftedAt := time.Now()
	var stale, drift string
	waitFor(t, "FeaturepipeFeatureStale for login_count_1h and FeaturepipeFeatureDrift for txn_last firing", 5*time.Minute, func() bool {
		for _, a := range prom.alerts(t) {
			id := a.Labels["feature"] + "@" + a.Labels["version"]
			switch a.Labels["alertname"] {
			case "FeaturepipeFeatureStale":
				if id != "login_count_1h@1" {
					t.Fatalf("FeaturepipeFeatureStale %s for %s, whose source runs", a.State, id)
				}
				if a.State == "firing" && stale == "" {
					stale = time.Since(shiftedAt).Round(time.Second).String()
				}
			case "FeaturepipeFeatureDrift":
				if id != "txn_last@1" || a.Labels["baseline"] != "train@1" {
					t.Fatalf("FeaturepipeFeatureDrift %s for %s against %s: only txn_last@1 has a baseline", a.State, id, a.Labels["baseline"])
				}
				if a.State == "firing" && drift == "" {
					drift = time.Since(shiftedAt).Round(time.Second).String()
				}
			}
		}
		return stale != "" && drift != ""
	})
	if since := time.Since(shiftedAt); since < 2*time.Minute {
		t.Fatalf("the alerts fired %s after the shift: before their `for`", since)
	}
	t.Logf("after the shift: FeaturepipeFeatureStale fired after %s, FeaturepipeFeatureDrift after %s (PSI %v)", stale, drift,
		prom.query(t, `featurepipe_feature_drift_psi{feature="txn_last"}`)[0].Value[1])
}
