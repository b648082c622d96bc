package ui

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
)

func get(t testing.TB, h http.Handler, target string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			r.Host = hdr[i+1]
		}
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b), w.Result().Header
}

func TestPlainWords(t *testing.T) {
	cfg := testkit.WriteConfig(t, `entities:
  - name: user
    key: user_id
sources:
  - name: transactions
    topic: transactions
    schema: transaction.avsc
    event_time: ts
features:
  - {name: a, version: 1, entity: user, source: transactions, aggregation: avg, field: amount, window: 30d, hop: 1d, owner: o, description: d}
  - {name: b, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, owner: o, description: d}
  - {name: c, version: 1, entity: user, source: transactions, aggregation: last, field: amount, window: lifetime, owner: o, description: d}
  - {name: d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1h, hop: 5m, where: "currency == 'EUR'", owner: o, description: d}
  - {name: e, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, bucket: currency, max_buckets: 5, owner: o, description: d}
`, nil)
	for _, tc := range []struct{ id, want string }{
		{"a@1", "average of amount over the last 30 days, 1-day hops, per user, from topic transactions"},
		{"b@1", "number of events over the last 7 days, 1-hour hops, "},
		{"c@1", "latest value of amount over all time, per user, from topic transactions"},
		{"d@1", "sum of amount over the last 1 hour, 5-minute hops, counting events where currency == 'EUR', per user, from topic transactions"},
		{"e@1", "sum of amount over the last 7 days, 1-hour hops, by currency (its 5 most frequent values, the others together as __other__), per user"},
	} {
		f, err := cfg.Feature(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if got := plainWords(f); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %q, want it to start with %q", tc.id, got, tc.want)
		}
	}
}

func TestSearchFiltersAndDeepLinks(t *testing.T) {
	f := newFixture(t, 40)
	u := f.ui(t, Options{})
	for _, tc := range []struct {
		name, target string
		want, not    []string
	}{
		{"text matches the description", "/ui/?q=number+7%2C", []string{`href="/ui/features/f007@1"`}, []string{`href="/ui/features/f008@1"`}},
		{"owner filter", "/ui/?owner=team-b", []string{"f001@1", "f006@1"}, []string{"f002@1"}},
		{"tag filter", "/ui/?tag=tag3", []string{"f003@1", "f007@1"}, []string{"f001@1"}},
		{"status deprecated", "/ui/?status=deprecated", []string{"f000@1", "f005@1"}, []string{"f000@2", "f001@1"}},
		{"status warming up", "/ui/?status=warming+up", []string{"f004@1"}, []string{"f001@1"}},
		{"status unused (never read, registered 40 days ago)", "/ui/?status=unused", []string{"f002@1"}, []string{"f001@1"}},
		{"source name", "/ui/?q=logins", []string{"f003@1", `source <a href="/ui/sources/logins">`}, []string{"f001@1"}},
		{"filters are kept in the form", "/ui/?owner=team-b&q=sum", []string{`<option selected>team-b</option>`, `value="sum"`}, nil},
		{"partial answers the results only", "/ui/?q=f001&partial=1", []string{"f001@1"}, []string{"<html", "search-form"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := get(t, u, tc.target)
			if code != 200 {
				t.Fatalf("status %d", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("missing %q", w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(body, n) {
					t.Errorf("unexpected %q", n)
				}
			}
		})
	}
}

func TestFeaturePage(t *testing.T) {
	f := newFixture(t, 40)
	u := f.ui(t, Options{})
	code, body, _ := get(t, u, "/ui/features/f001@1", "Host", "replica-1:8080")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	body = html.UnescapeString(body)
	for _, w := range []string{
		`sum of amount over the last 7 days`, // plain words (f001: sum, 7d)
		`data-root="feature:f001@1"`,         // the lineage graph, rooted here
		`data-node="service:svc00"`, `data-node="dataset:train_svc00@1"`, `data-node="model:m00@1"`, `data-node="topic:transactions"`,
		`href="/ui/services/svc00"`, `href="/ui/datasets/train_svc00@1"`, `href="/ui/models/m00@1"`,
		`data-chart="usage"`, `<tr data-consumer="fraud-api">`, // usage: chart and table
		`curl -s http://replica-1:8080/v1/lookup`, `"features":["f001@1"]`, `--features f001@1`, `transactions:f001@1`,
		"- name: f001\n  version: 1\n", // YAML
		"owner: team-b",
	} {
		if !strings.Contains(body, w) {
			t.Errorf("feature page lacks %q", w)
		}
	}
	// f001 is read for 30 two-hour steps: the usage table sums the hours
	// of the last 7 days (all 30 lookups of 2 keys each).
	if !strings.Contains(body, `<tr class="total" data-consumer=""><th scope="row">all consumers</th><td class="n lookups">30</td><td class="n keys">60</td>`) {
		t.Errorf("usage total row: %s", body[max(strings.Index(body, `class="total"`), 0):][:200])
	}
	// A bare name goes to the version a lookup reads; unknown ids are 404.
	code, _, hdr := get(t, u, "/ui/features/f000")
	if code != http.StatusFound || hdr.Get("Location") != "/ui/features/f000@2" {
		t.Errorf("bare name: %d to %q, want 302 to /ui/features/f000@2", code, hdr.Get("Location"))
	}
	if code, _, _ := get(t, u, "/ui/features/nope@1"); code != 404 {
		t.Errorf("unknown feature: %d, want 404", code)
	}
	// A version only the registry knows has a page built from its registered definition.
	if code, body, _ := get(t, u, "/ui/features/f001@9"); code != 200 || !strings.Contains(body, "registered definition") {
		t.Errorf("registry-only version: %d", code)
	}
}

// A derived feature's page says what it reads (no source, no window) and
// shows its expression; a ttl is spelled out.
func TestDerivedAndTTLFeaturePages(t *testing.T) {
	f := newFixture(t, 40)
	u := f.ui(t, Options{})
	for target, want := range map[string][]string{
		"/ui/features/spend_ratio@1": {"derived: f001 / f002, from f001@1, f002@1, per user", "expression: f001 / f002", "inputs: [f001@1, f002@1]"},
		"/ui/features/last_fresh@1":  {"latest value of amount over all time", "expires when its newest event is older than 30 days", "ttl: 30d"},
	} {
		code, body, _ := get(t, u, target)
		if code != 200 {
			t.Fatalf("%s: status %d: %s", target, code, body)
		}
		body = html.UnescapeString(body)
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %q", target, w)
			}
		}
	}
}

func TestSourcePageFieldsAndReaders(t *testing.T) {
	f := newFixture(t, 12)
	u := f.ui(t, Options{})
	code, body, _ := get(t, u, "/ui/sources/transactions")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	i := strings.Index(body, "<code>amount</code>")
	if i < 0 {
		t.Fatal("no amount field row")
	}
	row := body[i : strings.Index(body[i:], "</tr>")+i]
	if !strings.Contains(row, "double") || !strings.Contains(row, "f001@1") || strings.Contains(row, "f003@1") {
		t.Errorf("amount row: %s; want its type and f001@1 (sum of amount), not f003 (a logins count)", row)
	}
	if !strings.Contains(body, "event time (every feature)") || !strings.Contains(body, "entity key of user") {
		t.Error("the roles of ts and user_id are not shown")
	}
}

func TestMonitorIsShown(t *testing.T) {
	f := newFixture(t, 10)
	fresh := 42 * time.Second
	u := f.ui(t, Options{Monitor: monitorFunc(func(id string) (Monitoring, bool) {
		return Monitoring{Freshness: &fresh, Figures: []Figure{{Name: "psi", Value: 0.31, Threshold: 0.2, Alert: true}},
			Now: []Bucket{{10, 0.5}, {100, 0.5}}, Baseline: []Bucket{{10, 0.7}, {100, 0.3}}}, id == "f001@1"
	})})
	_, body, _ := get(t, u, "/ui/features/f001@1")
	for _, w := range []string{"42s since the last publication", `<tr class="alert"><th scope="row">psi</th><td class="n">0.31</td>`, `<rect class="baseline"`} {
		if !strings.Contains(body, w) {
			t.Errorf("feature page lacks %q", w)
		}
	}
	_, body, _ = get(t, u, "/ui/features/f002@1")
	if strings.Contains(body, `id="monitoring"`) {
		t.Error("a version the monitor knows nothing of shows a monitoring section")
	}
}

// TestServedMonitorIsShown: a Monitor that is also a ServedMonitor adds
// its served figures to the feature page's, even for a version Feature
// knows nothing of; the catalog snapshot never asks for them.
func TestServedMonitorIsShown(t *testing.T) {
	f := newFixture(t, 10)
	asked := map[string]int{}
	var mu sync.Mutex
	u := f.ui(t, Options{Monitor: servedMonitor{
		monitorFunc: func(id string) (Monitoring, bool) {
			return Monitoring{Figures: []Figure{{Name: "psi", Value: 0.01}}}, id == "f001@1"
		},
		served: func(id string) []Figure {
			mu.Lock()
			asked[id]++
			mu.Unlock()
			if id == "f003@1" {
				return nil
			}
			return []Figure{{Name: "served to ranking (1h): PSI vs train@1", Value: 0.52, Threshold: 0.2, Alert: true}}
		},
	}})
	for _, id := range []string{"f001@1", "f002@1"} {
		_, body, _ := get(t, u, "/ui/features/"+id)
		if w := `<tr class="alert"><th scope="row">served to ranking (1h): PSI vs train@1</th><td class="n">0.52</td>`; !strings.Contains(body, w) {
			t.Errorf("%s: feature page lacks %q", id, w)
		}
		if strings.Contains(body, `scope="row">psi<`) != (id == "f001@1") {
			t.Errorf("%s: Feature's figures shown %v", id, id != "f001@1")
		}
	}
	_, body, _ := get(t, u, "/ui/features/f003@1")
	if strings.Contains(body, `id="monitoring"`) {
		t.Error("a version with no monitoring and nothing served shows a monitoring section")
	}
	get(t, u, "/ui/")
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 3 {
		t.Errorf("served figures asked for %v: want the three feature pages only", asked)
	}
}

type servedMonitor struct {
	monitorFunc
	served func(string) []Figure
}

func (m servedMonitor) Served(id string) []Figure { return m.served(id) }

type monitorFunc func(string) (Monitoring, bool)

func (m monitorFunc) Feature(id string) (Monitoring, bool) { return m(id) }

type tokenMap map[string]string

func (m tokenMap) Consumer(tok string) (string, bool) { c, ok := m[tok]; return c, ok }

func TestTokens(t *testing.T) {
	f := newFixture(t, 5)
	var gotAuth string
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization") + "|" + r.URL.Path
		w.WriteHeader(200)
	})
	u := f.ui(t, Options{Tokens: tokenMap{"fpt_good": "fraud-api"}, API: api})
	if code, body, _ := get(t, u, "/ui/features/f001@1"); code != 401 || !strings.Contains(body, `action="/ui/login"`) {
		t.Errorf("no token: %d, want 401 with the login form", code)
	}
	if code, _, _ := get(t, u, "/ui/?token=fpt_bad"); code != 401 {
		t.Errorf("bad ?token=: %d, want 401", code)
	}
	code, _, hdr := get(t, u, "/ui/features/f001@1?token=fpt_good&x=1")
	if code != http.StatusSeeOther || hdr.Get("Location") != "/ui/features/f001@1?x=1" {
		t.Errorf("?token=: %d to %q, want 303 to the address without it", code, hdr.Get("Location"))
	}
	ck := hdr.Get("Set-Cookie")
	if !strings.Contains(ck, "featurepipe_token=fpt_good") || !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") || !strings.Contains(ck, "Path=/ui/") {
		t.Errorf("cookie %q", ck)
	}
	if code, _, _ := get(t, u, "/ui/features/f001@1", "Cookie", "featurepipe_token=fpt_good"); code != 200 {
		t.Errorf("with the cookie: %d, want 200", code)
	}
	if _, _, hdr := get(t, u, "/ui/login"); !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("login page CSP %q", hdr.Get("Content-Security-Policy"))
	}
	if code, _, _ := get(t, u, "/ui/static/app.js"); code != 200 {
		t.Errorf("static files need no token: %d", code)
	}
	// The console's proxy forwards the cookie's token to the API.
	r := httptest.NewRequest(http.MethodPost, "/ui/api/lookup", strings.NewReader(`{}`))
	r.Header.Set("Cookie", "featurepipe_token=fpt_good")
	w := httptest.NewRecorder()
	u.ServeHTTP(w, r)
	if gotAuth != "Bearer fpt_good|/v1/lookup" {
		t.Errorf("the API saw %q, want the Bearer token on /v1/lookup", gotAuth)
	}
	r = httptest.NewRequest(http.MethodPost, "/ui/api/lookup", strings.NewReader(`{}`))
	w = httptest.NewRecorder()
	gotAuth = ""
	u.ServeHTTP(w, r)
	if w.Code != 401 || gotAuth != "" {
		t.Errorf("proxy without a token: %d (API called: %q), want 401 and no call", w.Code, gotAuth)
	}
	// POST /ui/login sets the cookie and goes back, only within /ui/.
	r = httptest.NewRequest(http.MethodPost, "/ui/login", strings.NewReader("token=fpt_good&next=https://evil.example/"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w = httptest.NewRecorder()
	u.ServeHTTP(w, r)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/" {
		t.Errorf("login: %d to %q, want 303 to /ui/", w.Code, w.Header().Get("Location"))
	}
}

func TestNiceCeil(t *testing.T) {
	for _, tc := range []struct{ n, want int64 }{{0, 4}, {1, 4}, {4, 4}, {5, 8}, {9, 20}, {10, 20}, {21, 40}, {41, 80}, {81, 200}, {1234, 2000}} {
		if got := niceCeil(tc.n); got != tc.want {
			t.Errorf("niceCeil(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

// TestPartialUsageCallsNothingUnused: while the usage follower is still
// reading the lookup log (usage.Live.CaughtUp false), a version never read
// in what was read so far is not called unused, and the search and feature
// pages say the counts are partial; once it has caught up, the next page
// shows the statuses (the catalog is rebuilt at once, not at its refresh).
func TestPartialUsageCallsNothingUnused(t *testing.T) {
	f := newFixture(t, 40)
	f.live.BeginCatchUp()
	u := f.ui(t, Options{Refresh: time.Hour})
	_, body, _ := get(t, u, "/ui/?status=unused")
	if strings.Contains(body, `href="/ui/features/f002@1"`) {
		t.Error("f002@1 is shown unused while usage is partial")
	}
	if !strings.Contains(body, `id="usage-partial"`) {
		t.Error("the search page does not say usage is partial")
	}
	if _, body, _ = get(t, u, "/ui/features/f001@1"); !strings.Contains(body, `id="usage-partial"`) {
		t.Error("the feature page does not say usage is partial")
	}

	// A follower of an empty lookup log catches up at once.
	k := testkit.StartKafka(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- f.live.Follow(ctx, kafka.Conn{Brokers: k.Brokers}, "lookups-none", time.Time{}, nil, nil)
	}()
	for deadline := time.Now().Add(30 * time.Second); !f.live.CaughtUp(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Follow of an empty lookup log did not catch up in 30 s")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, body, _ = get(t, u, "/ui/?status=unused")
	if !strings.Contains(body, `href="/ui/features/f002@1"`) {
		t.Error("f002@1 (never read) is not shown unused once usage is complete")
	}
	if strings.Contains(body, `id="usage-partial"`) {
		t.Error("the search page still says usage is partial")
	}
}
