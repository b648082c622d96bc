// Package ui is featurepipe's web catalog: server-rendered pages, served
// under /ui/ by every lookup replica (`featurepipe serve`) and by
// `featurepipe dev`, where people find a feature, understand what it
// computes and who depends on it, and trust it (status, freshness, usage).
//
// Pages (all GET, read-only):
//
//	/ui/                      search over names, descriptions, tags, owners, entities and sources,
//	                          with owner, tag, entity and status filters; deep links by query string
//	/ui/features/NAME@V       a feature version: plain words, YAML, versions, freshness, usage per
//	                          consumer (SVG), dependents, lineage (SVG), copy-paste examples
//	/ui/services/NAME         /ui/datasets/NAME@V  /ui/models/NAME@V
//	/ui/sources/NAME          /ui/entities/NAME    (each linked both ways)
//	/ui/console               the lookup console: keys, features or a service, the live answer
//
// The pages read the same catalog code the CLI reads: the feature file
// (internal/config), the registry view (pipeline/registry), the lineage
// graph and descriptions (pipeline/lineage) and the usage followed from the
// lookup log (usage.Live). Nothing is computed twice: a catalog snapshot is
// built at most once per Options.Refresh and shared by the requests in
// between. Monitoring (freshness, drift, distributions) plugs in through
// the Monitor interface.
//
// HTML comes from html/template (contextual escaping), embedded with the
// static files (one stylesheet, one small script: live search, the
// console, copy buttons); charts and the lineage graph are inline SVG drawn
// on the server. The pages work without JavaScript, except the console,
// whose answer the script fetches.
//
// Access: with API tokens (Options.Tokens, serve --tokens) every page asks
// for a token. A browser presents it once, in the form at /ui/login or as
// ?token=TOKEN on any /ui/ address (the server then redirects to the same
// address without it); it is kept in an HttpOnly, SameSite=Strict cookie
// scoped to /ui/ (Secure over TLS) and checked on every request. Any valid
// token may browse the catalog (metadata only); the console's lookups go
// through POST /ui/api/lookup, which forwards to the API with the cookie's
// token, so the token's entity and tag scopes apply to the values as on
// /v1/lookup. /ui/logout forgets the cookie.
package ui

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/usage"
)

//go:embed templates/*.html static/*
var files embed.FS

// Prefix is where the UI is served.
const Prefix = "/ui/"

// TokenChecker tells whether a presented API token is valid and whose it
// is (lookup.Tokens implements it).
type TokenChecker interface {
	Consumer(token string) (consumer string, ok bool)
}

// Monitor is what monitoring knows about feature versions (freshness,
// drift, value distributions). The feature page shows what it returns; a
// nil Monitor shows freshness from the registry statuses alone.
// Implementations must be safe for concurrent use and cheap (called once
// per version when a catalog snapshot is built, and once per feature page).
type Monitor interface {
	Feature(id string) (Monitoring, bool)
}

// ServedMonitor is an optional part of a Monitor: figures of the values
// served to each consumer (from the lookup log), appended to the feature
// page's. Only the feature page asks (not the catalog snapshot): they may
// cost milliseconds per version (merges of a day of sketches per
// consumer).
type ServedMonitor interface {
	Served(id string) []Figure
}

// Monitoring is one feature version's monitoring data; every part is
// optional.
type Monitoring struct {
	// Freshness is the age of the newest value served, replacing the
	// registry's publication age when set.
	Freshness *time.Duration
	// Figures are named drift or quality figures (e.g. PSI 0.02), shown in
	// a table; Alert marks the ones past their threshold.
	Figures []Figure
	// Now and Baseline are the value distribution now and at training
	// time, as histograms over the same bucket bounds (one bar pair each).
	Now, Baseline []Bucket
}

// Figure is one named monitoring figure.
type Figure struct {
	Name      string
	Value     float64
	Threshold float64 // 0: none
	Alert     bool
}

// Bucket is one histogram bucket: values up to Upper (the last: +Inf).
type Bucket struct {
	Upper float64
	Share float64 // fraction of the values, 0..1
}

// Options configure the UI. Config and Registry are required.
type Options struct {
	// Config is the feature file the replica serves.
	Config *config.File
	// Registry is the catalog view, kept current by its owner (the lookup
	// service follows the registry topic into it).
	Registry *registry.View
	// Usage is the usage followed from the lookup log; nil shows none (and
	// no version is ever "unused").
	Usage *usage.Live
	// Monitor, when set, adds monitoring data to the feature pages.
	Monitor Monitor
	// API is the lookup API the console reads through (POST /v1/lookup);
	// nil disables the console.
	API http.Handler
	// Tokens, when set, are required to see any page (see the package doc).
	Tokens TokenChecker
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Refresh is how long one catalog snapshot serves requests before the
	// next request builds a new one. Default 2s; negative: every request
	// builds its own (tests, benchmarks).
	Refresh time.Duration
	// Log defaults to a no-op logger.
	Log *zap.Logger
}

// UI is the web catalog's HTTP handler.
type UI struct {
	o     Options
	pages map[string]*template.Template
	mux   *http.ServeMux

	mu    sync.Mutex
	cat   *catalog
	built time.Time
}

// New validates o and parses the templates.
func New(o Options) (*UI, error) {
	if o.Config == nil || o.Registry == nil {
		return nil, errors.New("ui: Config and Registry are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Refresh == 0 {
		o.Refresh = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	u := &UI{o: o, pages: map[string]*template.Template{}}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/results.html")
	if err != nil {
		return nil, fmt.Errorf("ui: parse layout: %w", err)
	}
	for _, p := range []string{"search", "feature", "service", "dataset", "model", "source", "entity", "console", "login", "notfound"} {
		t, err := template.Must(base.Clone()).ParseFS(files, "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: parse %s: %w", p, err)
		}
		u.pages[p] = t
	}
	u.routes()
	return u, nil
}

// ServeHTTP serves the pages under Prefix.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.mux.ServeHTTP(w, r) }

func (u *UI) routes() {
	mux := http.NewServeMux()
	static, _ := fs.Sub(files, "static")
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", cacheFor(http.FileServerFS(static))))
	mux.HandleFunc("GET /ui/login", u.handleLogin)
	mux.HandleFunc("POST /ui/login", u.handleLogin)
	mux.HandleFunc("GET /ui/logout", u.handleLogout)
	page := func(pattern string, h func(http.ResponseWriter, *http.Request, *catalog)) {
		mux.Handle(pattern, u.authed(func(w http.ResponseWriter, r *http.Request) { h(w, r, u.catalog()) }))
	}
	page("GET /ui/{$}", u.handleSearch)
	page("GET /ui/features/{id}", u.handleFeature)
	page("GET /ui/services/{name}", u.handleService)
	page("GET /ui/datasets/{id}", u.handleDataset)
	page("GET /ui/models/{id}", u.handleModel)
	page("GET /ui/sources/{name}", u.handleSource)
	page("GET /ui/entities/{name}", u.handleEntity)
	page("GET /ui/console", u.handleConsole)
	mux.Handle("POST /ui/api/lookup", u.authed(u.handleLookupProxy))
	page("/ui/", func(w http.ResponseWriter, r *http.Request, c *catalog) {
		u.notFound(w, r, "There is no page at "+r.URL.Path+".")
	})
	mux.Handle("GET /ui", http.RedirectHandler(Prefix, http.StatusMovedPermanently))
	u.mux = mux
}

func cacheFor(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

// catalog returns the current snapshot, building a new one when the last
// is older than Refresh.
func (u *UI) catalog() *catalog {
	now := u.o.Now()
	if u.o.Refresh < 0 {
		return buildCatalog(&u.o, now)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cat == nil || now.Sub(u.built) >= u.o.Refresh || now.Before(u.built) ||
		(u.cat.usagePartial && u.o.Usage.CaughtUp()) { // the usage follower has caught up since
		u.cat, u.built = buildCatalog(&u.o, now), now
	}
	return u.cat
}
