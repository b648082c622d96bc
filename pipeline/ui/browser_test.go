//go:build browser

package ui

// The UI in a real browser: headless Chromium (Debian's chromium package)
// driven by chromedp against the whole pipeline (startLive). Run with
// `make test-ui`; it fails, not skips, when Chromium is missing. Every page
// visited is screenshotted into the test's temporary directory; when the
// test fails the screenshots are kept in $UI_TEST_ARTIFACTS (default
// .cache/ui-test-artifacts at the repository root) and the log says where.
// With UI_SCREENSHOTS=DIR (`make screenshots`) the main pages are also
// written to DIR as the README's small PNGs.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/featurepipe/featurepipe/pipeline/lookup"
)

// maxReadmePNG bounds a README screenshot.
const maxReadmePNG = 150 << 10

type browser struct {
	t       *testing.T
	ctx     context.Context
	base    string
	shots   string // this run's screenshots
	readme  string // UI_SCREENSHOTS, or ""
	mu      sync.Mutex
	console []string // errors and exceptions the pages logged
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed; the UI tests need it: apt-get install -y chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1200, 900), chromedp.UserDataDir(t.TempDir()))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 5*time.Minute)
	b := &browser{t: t, ctx: ctx, base: base, shots: t.TempDir(), readme: os.Getenv("UI_SCREENSHOTS")}
	t.Cleanup(func() {
		cancelT()
		cancelC()
		cancelA()
		if t.Failed() {
			b.keepShots()
		}
	})
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.console = append(b.console, m.String()+" at "+m.URL)
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// keepShots copies the screenshots where CI keeps them.
func (b *browser) keepShots() {
	dir := os.Getenv("UI_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".cache", "ui-test-artifacts")
	}
	dir = filepath.Join(dir, b.t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Logf("keep screenshots: %v", err)
		return
	}
	ents, _ := os.ReadDir(b.shots)
	for _, e := range ents {
		if data, err := os.ReadFile(filepath.Join(b.shots, e.Name())); err == nil {
			_ = os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644)
		}
	}
	abs, _ := filepath.Abs(dir)
	b.t.Logf("screenshots of the failed run kept in %s", abs)
}

// do runs actions, failing the test with what was being done.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v", what, err)
	}
}

func eval[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// shot saves a screenshot of the viewport as name.png; with readme set it
// is also a README picture (which must stay small).
func (b *browser) shot(name string) {
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	_ = os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644)
}

func (b *browser) readmeShot(name string) {
	b.t.Helper()
	b.shot(name)
	if b.readme == "" {
		return
	}
	png, _ := os.ReadFile(filepath.Join(b.shots, name+".png"))
	if len(png) > maxReadmePNG {
		b.t.Errorf("README screenshot %s is %d KiB, over %d KiB", name, len(png)>>10, maxReadmePNG>>10)
	}
	if err := os.MkdirAll(b.readme, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.readme, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// a11yProblems are the accessibility rules every page keeps: a language,
// one h1, a label for every form control, an accessible name for every
// picture (SVG with role img) and every link; and no sideways scrolling of
// the page (wide tables and graphs scroll in their own box).
const a11yProblems = `(() => {
	const p = [];
	if (!document.documentElement.lang) p.push("no lang on <html>");
	if (document.querySelectorAll("h1").length !== 1) p.push(document.querySelectorAll("h1").length + " h1 elements");
	document.querySelectorAll("input:not([type=hidden]), select, textarea").forEach(el => {
		if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label")) p.push("unlabelled " + el.outerHTML.slice(0, 80));
	});
	document.querySelectorAll("svg[role=img]").forEach(el => {
		if (!el.querySelector("title") && !el.getAttribute("aria-label")) p.push("SVG without a title");
	});
	document.querySelectorAll("a[href]").forEach(a => {
		if (!a.textContent.trim() && !a.querySelector("title")) p.push("link without text: " + a.getAttribute("href"));
	});
	if (document.documentElement.scrollWidth > window.innerWidth + 1)
		p.push("the page is " + document.documentElement.scrollWidth + "px wide in a " + window.innerWidth + "px window (scrolls sideways)");
	return p;
})()`

// expectConsole drops the console errors that contain text (expected
// ones, e.g. the browser logging a 401 or 403 answer), failing the test
// when there is none.
func (b *browser) expectConsole(text string) {
	b.t.Helper()
	time.Sleep(200 * time.Millisecond)
	b.mu.Lock()
	defer b.mu.Unlock()
	var keep []string
	found := false
	for _, m := range b.console {
		if strings.Contains(m, text) {
			found = true
			continue
		}
		keep = append(keep, m)
	}
	if !found {
		b.t.Errorf("expected a console error with %q; got %v", text, b.console)
	}
	b.console = keep
}

func (b *browser) noConsoleErrors(page string) {
	b.t.Helper()
	for _, p := range eval[[]string](b, a11yProblems) {
		b.t.Errorf("%s: accessibility: %s", page, p)
	}
	time.Sleep(200 * time.Millisecond) // let late events arrive
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		b.t.Errorf("%s: console: %s", page, m)
	}
	b.console = nil
}

func TestBrowser(t *testing.T) {
	env := startLive(t, false)
	b := newBrowser(t, env.url)
	b.do("set the viewport", chromedp.EmulateViewport(1200, 860))

	// Search: load the home page, type a query, the results follow.
	b.do("load the search page", chromedp.Navigate(env.url+"/ui/"), chromedp.WaitVisible("#q"))
	if got := eval[string](b, `document.activeElement.id`); got != "q" {
		t.Errorf("the search box has no keyboard focus on load (focus on %q)", got)
	}
	if n := eval[int](b, `document.querySelectorAll("#results a.fname").length`); n != len(env.cfg.Features) {
		t.Errorf("home page lists %d versions, want %d", n, len(env.cfg.Features))
	}
	b.do("tab to the next control", chromedp.KeyEvent("\t"))
	if got := eval[string](b, `document.activeElement.name`); got != "owner" {
		t.Errorf("Tab from the search box went to %q, want the owner filter", got)
	}
	b.do("focus the search box", chromedp.Focus("#q"))
	b.readmeShot("search")
	b.do("type a query", chromedp.SendKeys("#q", "txn_count_7d"))
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`document.getElementById("results").dataset.query === "q=txn_count_7d" &&
		document.querySelectorAll("#results a.fname").length === 1`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		b.shot("failed-live-search")
		t.Fatalf("the live search did not show the one match of txn_count_7d: %v", err)
	}
	if got := eval[string](b, `location.pathname + location.search`); got != "/ui/?q=txn_count_7d" {
		t.Errorf("the address is %q, want the deep link /ui/?q=txn_count_7d", got)
	}
	b.shot("search-query")
	b.noConsoleErrors("search")

	// Follow the result to the feature page.
	b.do("follow the result", chromedp.Click("#results a.fname"), chromedp.WaitVisible("#lineage svg"))
	if got := eval[string](b, `location.pathname`); got != "/ui/features/txn_count_7d@1" {
		t.Fatalf("followed to %q, want /ui/features/txn_count_7d@1", got)
	}
	if got := eval[string](b, `document.getElementById("plain-words").textContent`); got != "number of events over the last 7 days, 1-hour hops, per user, from topic transactions" {
		t.Errorf("plain words: %q", got)
	}
	nodes := eval[[]string](b, `Array.from(document.querySelectorAll("#lineage [data-node]")).map(n => n.dataset.node)`)
	for _, want := range []string{"topic:transactions", "source:transactions", "feature:txn_count_7d@1", "service:fraud_scoring",
		"dataset:fraud_train@1", "model:fraud-gbm@1", "consumer:fraud-api", "consumer:batch-scorer"} {
		if !contains(nodes, want) {
			t.Errorf("lineage graph lacks %s; has %v", want, nodes)
		}
	}
	rows := eval[map[string][]string](b, `Object.fromEntries(Array.from(document.querySelectorAll("#usage tr[data-consumer]")).map(
		r => [r.dataset.consumer || "all", [r.querySelector(".lookups").textContent, r.querySelector(".keys").textContent]]))`)
	for consumer, want := range map[string][]string{
		"all":          {strconv.Itoa(fraudLookups + batchLookups), strconv.Itoa(2*fraudLookups + batchLookups)},
		"fraud-api":    {strconv.Itoa(fraudLookups), strconv.Itoa(2 * fraudLookups)},
		"batch-scorer": {strconv.Itoa(batchLookups), strconv.Itoa(batchLookups)},
	} {
		if got := rows[consumer]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("usage of %s: lookups and keys %v, want %v", consumer, got, want)
		}
	}
	if n := eval[int](b, `document.querySelectorAll('#usage svg polyline[data-consumer="fraud-api"]').length`); n != 1 {
		t.Errorf("the usage chart has %d fraud-api lines, want 1", n)
	}
	deps := eval[string](b, `document.getElementById("dependents").textContent`)
	for _, want := range []string{"fraud_scoring", "fraud_train@1", "fraud-gbm@1"} {
		if !strings.Contains(deps, want) {
			t.Errorf("'Depends on it' lacks %s", want)
		}
	}
	b.readmeShot("feature")
	b.noConsoleErrors("feature")

	// The dependents are linked both ways: service, dataset, model, source, entity.
	for _, p := range []struct{ click, path, h1 string }{
		{`#dependents a[href="/ui/services/fraud_scoring"]`, "/ui/services/fraud_scoring", "fraud_scoring"},
		{`#lineage a[href="/ui/datasets/fraud_train@1"]`, "/ui/datasets/fraud_train@1", "fraud_train@1"},
		{`#lineage a[href="/ui/models/fraud-gbm@1"]`, "/ui/models/fraud-gbm@1", "fraud-gbm@1"},
		{`a[href="/ui/features/txn_count_7d@1"]`, "/ui/features/txn_count_7d@1", "txn_count_7d@1"},
		{`a[href="/ui/sources/transactions"]`, "/ui/sources/transactions", "transactions"},
		{`a[href="/ui/entities/user"]`, "/ui/entities/user", "user"},
	} {
		b.do("follow "+p.click, chromedp.Click(p.click), chromedp.WaitVisible("footer"))
		if got := eval[string](b, `location.pathname`); got != p.path {
			t.Fatalf("%s led to %q, want %q", p.click, got, p.path)
		}
		if h1 := eval[string](b, `document.querySelector("h1").textContent`); !strings.Contains(h1, p.h1) {
			t.Errorf("%s: heading %q lacks %q", p.path, h1, p.h1)
		}
		name := strings.Split(strings.TrimPrefix(p.path, "/ui/"), "/")[0]
		if name == "services" {
			b.readmeShot("service")
		} else {
			b.shot(name)
		}
		b.noConsoleErrors(p.path)
	}

	// The console: keys and features in, the live answer out, equal to /v1/lookup's.
	b.do("open the console", chromedp.Navigate(env.url+"/ui/console?entity=user&feature=txn_count_7d@1&feature=txn_amount_avg_30d@1"),
		chromedp.WaitVisible("#c-keys"), chromedp.SendKeys("#c-keys", "u004, u005, nobody"), chromedp.Click("#c-run"),
		chromedp.WaitVisible("#c-table"))
	got := eval[map[string]map[string]string](b, `Object.fromEntries(Array.from(document.querySelectorAll("#c-table tbody tr")).map(
		r => [r.dataset.key, Object.fromEntries(Array.from(r.querySelectorAll("td")).map(td => [td.dataset.feature, td.firstChild.textContent]))]))`)
	var want lookup.LookupResponse
	env.post(t, "", map[string]any{"entity": "user", "keys": []string{"u004", "u005", "nobody"},
		"features": []string{"txn_count_7d@1", "txn_amount_avg_30d@1"}}, &want)
	if len(got) != 3 || len(want.Results) != 3 {
		t.Fatalf("console answered %v; /v1/lookup %+v", got, want.Results)
	}
	for _, r := range want.Results {
		for name, v := range r.Features {
			shown := got[r.Key][name]
			switch {
			case v.Value == nil && shown != "null":
				t.Errorf("console %s %s = %q, /v1/lookup null", r.Key, name, shown)
			case v.Value != nil:
				if f, err := strconv.ParseFloat(shown, 64); err != nil || f != *v.Value {
					t.Errorf("console %s %s = %q, /v1/lookup %v", r.Key, name, shown, *v.Value)
				}
			}
		}
	}
	if got["u004"]["txn_count_7d@1"] != "6" {
		t.Errorf("console: u004 txn_count_7d@1 = %q, want 6 (its events)", got["u004"]["txn_count_7d@1"])
	}
	b.readmeShot("console")
	b.noConsoleErrors("console")

	// String features: the console shows a string and a list of strings as
	// their JSON text, equal to /v1/lookup's.
	strFeatures := []string{"txn_last_merchant@1", "txn_recent_merchants@1"}
	b.do("console: string features", chromedp.Navigate(env.url+"/ui/console?entity=user&feature="+strFeatures[0]+"&feature="+strFeatures[1]),
		chromedp.WaitVisible("#c-keys"), chromedp.SendKeys("#c-keys", "u004, nobody"), chromedp.Click("#c-run"),
		chromedp.WaitVisible("#c-table"))
	got = eval[map[string]map[string]string](b, `Object.fromEntries(Array.from(document.querySelectorAll("#c-table tbody tr")).map(
		r => [r.dataset.key, Object.fromEntries(Array.from(r.querySelectorAll("td")).map(td => [td.dataset.feature, td.firstChild.textContent]))]))`)
	var strWant lookup.LookupResponse
	env.post(t, "", map[string]any{"entity": "user", "keys": []string{"u004", "nobody"}, "features": strFeatures}, &strWant)
	for _, r := range strWant.Results {
		for name, v := range r.Features {
			want, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			var w struct{ Value json.RawMessage }
			if err := json.Unmarshal(want, &w); err != nil {
				t.Fatal(err)
			}
			if shown := got[r.Key][name]; shown != string(w.Value) {
				t.Errorf("console %s %s = %s, /v1/lookup %s", r.Key, name, shown, w.Value)
			}
		}
	}
	if v := got["u004"]["txn_last_merchant@1"]; !strings.HasPrefix(v, `"`) {
		t.Errorf("console: u004 txn_last_merchant@1 = %s, want a JSON string (the demo's merchants)", v)
	}
	b.noConsoleErrors("console with string features")

	// A phone: the search page fits the width.
	b.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(1)), chromedp.Navigate(env.url+"/ui/?q=txn"),
		chromedp.WaitVisible("#results"))
	if w := eval[int](b, `document.documentElement.scrollWidth`); w > 392 {
		t.Errorf("on a 390px phone the search page is %dpx wide (scrolls sideways)", w)
	}
	b.shot("search-phone")
	b.noConsoleErrors("search on a phone")
	for _, path := range []string{"/ui/features/txn_count_7d@1", "/ui/sources/transactions", "/ui/console"} {
		b.do("phone "+path, chromedp.Navigate(env.url+path), chromedp.WaitVisible("footer"))
		b.shot("phone-" + strings.Split(strings.TrimPrefix(path, "/ui/"), "/")[0])
		b.noConsoleErrors(path + " on a phone")
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestBrowserTokens: with API tokens, the browser signs in with the form,
// carries the token in its cookie, and the console's answers obey the
// token's scopes.
func TestBrowserTokens(t *testing.T) {
	env := startLive(t, true)
	b := newBrowser(t, env.url)
	b.do("set the viewport", chromedp.EmulateViewport(1200, 860))
	b.do("open a feature page without a token", chromedp.Navigate(env.url+"/ui/features/txn_count_7d@1"), chromedp.WaitVisible("#token"))
	b.shot("login")
	b.expectConsole("status of 401") // the browser logs the page's own 401
	b.noConsoleErrors("login")
	b.do("sign in", chromedp.SendKeys("#token", liveTokens["payments-only"]), chromedp.Submit("#token"), chromedp.WaitVisible("#lineage svg"))
	if got := eval[string](b, `location.pathname`); got != "/ui/features/txn_count_7d@1" {
		t.Errorf("after signing in the browser is on %q, want the page it asked for", got)
	}
	if got := eval[string](b, `document.cookie`); got != "" {
		t.Errorf("the token cookie is readable by scripts: %q", got)
	}
	// payments-only may read txn_count_7d (tagged payments), not txn_amount_max_7d (fraud).
	b.do("console within the scope", chromedp.Navigate(env.url+"/ui/console?entity=user&feature=txn_count_7d@1"),
		chromedp.WaitVisible("#c-keys"), chromedp.SendKeys("#c-keys", "u004"), chromedp.Click("#c-run"), chromedp.WaitVisible("#c-table"))
	if got := eval[string](b, `document.querySelector('#c-table td[data-feature="txn_count_7d@1"]').firstChild.textContent`); got != "6" {
		t.Errorf("console with the token: txn_count_7d@1 of u004 = %q, want 6", got)
	}
	b.do("console outside the scope", chromedp.Navigate(env.url+"/ui/console?entity=user&feature=txn_amount_max_7d@1"),
		chromedp.WaitVisible("#c-keys"), chromedp.SendKeys("#c-keys", "u004"), chromedp.Click("#c-run"), chromedp.WaitVisible("#c-error"))
	if got := eval[string](b, `document.getElementById("c-error").textContent`); !strings.HasPrefix(got, "403 ") || !strings.Contains(got, "payments-only") {
		t.Errorf("console outside the token's scope shows %q, want the API's 403 naming the consumer", got)
	}
	b.shot("console-forbidden")
	b.expectConsole("status of 403") // the browser logs the API's 403
	b.noConsoleErrors("console outside the scope")
	b.do("sign out", chromedp.Navigate(env.url+"/ui/logout"), chromedp.WaitVisible("#token"))
	b.do("the catalog asks again", chromedp.Navigate(env.url+"/ui/"), chromedp.WaitVisible("#token"))
	b.expectConsole("status of 401")
}
