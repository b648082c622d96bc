package ui

import (
	"encoding/json"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/lineage"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/usage"
	"github.com/featurepipe/featurepipe/schemas"
)

// link is a named link; URL "" is plain text (a consumer, or an object
// with no page).
type link struct {
	Name, URL, Kind, Note string
}

// nodeLink is the link to a lineage node's page.
func (c *catalog) nodeLink(n lineage.Node) link {
	l := link{Name: n.Name, Kind: n.Kind}
	switch n.Kind {
	case lineage.KindFeature:
		l.URL = featureURL(n.Name)
	case lineage.KindService:
		l.URL = serviceURL(n.Name)
	case lineage.KindDataset:
		if _, ok := c.reg.Dataset(n.Name); ok {
			l.URL = datasetURL(n.Name)
		}
	case lineage.KindModel:
		if _, ok := c.reg.Model(n.Name); ok {
			l.URL = modelURL(n.Name)
		}
	case lineage.KindSource:
		l.URL = sourceURL(n.Name)
	case lineage.KindTopic:
		if s, ok := c.cfg.SourceByTopic(n.Name); ok {
			l.URL = sourceURL(s.Name)
		}
	}
	return l
}

// links returns the links of the nodes of kind among ns.
func (c *catalog) links(ns []lineage.Node, kind string) []link {
	var out []link
	for _, n := range ns {
		if n.Kind == kind {
			out = append(out, c.nodeLink(n))
		}
	}
	return out
}

// --- search

type searchData struct {
	Query                            query
	Rows                             []*featureRow
	Total                            int
	Owners, Tags, Entities, Statuses []string
	Now                              time.Time
	Usage                            bool
	UsagePartial                     bool // the lookup log is still being read: see usage.Live.CaughtUp
	Services, Sources, EntityLinks   []link
	Datasets, Models                 []link
	Filtered                         bool
	// Shown is how many of Rows are shown (searchLimit unless ?all=1);
	// AllURL shows them all.
	Shown  int
	AllURL string
}

// searchLimit bounds the rows a search shows unless asked for all of
// them: a page stays fast and readable with thousands of versions.
const searchLimit = 100

func (u *UI) handleSearch(w http.ResponseWriter, r *http.Request, c *catalog) {
	v := r.URL.Query()
	q := query{Q: strings.TrimSpace(v.Get("q")), Owner: v.Get("owner"), Tag: v.Get("tag"), Entity: v.Get("entity"), Status: v.Get("status")}
	d := searchData{Query: q, Rows: c.search(q), Total: len(c.features), Owners: c.owners, Tags: c.tags, Entities: c.entities,
		Statuses: statuses, Now: c.now, Usage: u.o.Usage != nil, UsagePartial: c.usagePartial, Filtered: q != query{}}
	if q.Q != "" && q.Owner == "" && q.Tag == "" && q.Status == "" {
		words := strings.Fields(strings.ToLower(q.Q))
		match := func(texts ...string) bool {
			hay := strings.ToLower(strings.Join(texts, "\n"))
			for _, w := range words {
				if !strings.Contains(hay, w) {
					return false
				}
			}
			return true
		}
		for _, s := range c.cfg.Services {
			if (q.Entity == "" || s.Entity == q.Entity) && match(s.Name, s.Description, s.Owner, s.Entity) {
				d.Services = append(d.Services, link{Name: s.Name, URL: serviceURL(s.Name), Note: s.Description})
			}
		}
		for _, s := range c.cfg.Sources {
			if match(s.Name, s.Topic) {
				d.Sources = append(d.Sources, link{Name: s.Name, URL: sourceURL(s.Name), Note: "topic " + s.Topic})
			}
		}
		for _, e := range c.cfg.Entities {
			if match(e.Name, e.Key) {
				d.EntityLinks = append(d.EntityLinks, link{Name: e.Name, URL: entityURL(e.Name), Note: "key " + e.Key})
			}
		}
		for _, ds := range c.reg.Datasets() {
			if match(ds.ID(), ds.Description, ds.Owner) {
				d.Datasets = append(d.Datasets, link{Name: ds.ID(), URL: datasetURL(ds.ID()), Note: ds.Description})
			}
		}
		for _, m := range c.reg.Models() {
			if match(m.ID(), m.Description, m.Owner) {
				d.Models = append(d.Models, link{Name: m.ID(), URL: modelURL(m.ID()), Note: m.Description})
			}
		}
	}
	d.Shown = len(d.Rows)
	if v.Get("all") != "1" && len(d.Rows) > searchLimit {
		d.Shown = searchLimit
		all := r.URL.Query()
		all.Del("partial")
		all.Set("all", "1")
		d.AllURL = Prefix + "?" + all.Encode()
	}
	if v.Get("partial") == "1" { // live search: the results only
		u.render(w, http.StatusOK, "results", page{Data: d})
		return
	}
	u.render(w, http.StatusOK, "search", page{Title: "Feature catalog", Nav: "search", Data: d})
}

// --- feature

type versionInfo struct {
	Row     *featureRow
	Words   string
	Current bool
}

type featureData struct {
	Row        *featureRow
	Words      string
	YAML       string
	At         string
	ReplacedBy string
	Sunset     string
	Versions   []versionInfo
	Statuses   []registry.Status
	Definition *registry.Definition
	Differs    bool
	Services   []link
	Datasets   []link
	Models     []link
	Consumers  []link
	Lineage    template.HTML
	Usage      *usage.LiveStats
	UsageChart template.HTML
	UsageOn    bool
	// UsagePartial: the lookup log is still being read (usage.Live.CaughtUp).
	UsagePartial bool
	Monitoring   *Monitoring
	Distrib      template.HTML
	Curl, Feast  string
	Backfill     string
	Now          time.Time
}

func (u *UI) handleFeature(w http.ResponseWriter, r *http.Request, c *catalog) {
	id := r.PathValue("id")
	row, ok := c.byID[id]
	if !ok {
		// A bare name goes to the version a lookup reads.
		if f, _, err := c.cfg.ResolveReady(id, c.reg.Ready); err == nil && !strings.Contains(id, "@") {
			http.Redirect(w, r, featureURL(f.ID), http.StatusFound)
			return
		}
		if vs := c.byName[id]; len(vs) > 0 && !strings.Contains(id, "@") {
			http.Redirect(w, r, featureURL(vs[len(vs)-1].ID), http.StatusFound)
			return
		}
		u.notFound(w, r, "No feature version "+id+" is in the feature file or the catalog. Feature pages are named NAME@VERSION.")
		return
	}
	desc, err := lineage.Describe(lineage.NodeID(lineage.KindFeature, id), c.graph, c.cfg, c.reg, c.consumers)
	if err != nil {
		u.notFound(w, r, err.Error())
		return
	}
	d := featureData{Row: row, Now: c.now, Statuses: desc.Statuses, Definition: desc.Definition, UsageOn: u.o.Usage != nil,
		UsagePartial: c.usagePartial}
	if f := desc.Feature; f != nil {
		d.At, d.ReplacedBy, d.Sunset = f.At, f.ReplacedBy, f.Sunset
	}
	if row.Def != nil {
		d.Words, d.YAML = plainWords(row.Def), featureYAML(row.Def)
		if row.Def.ReplacedBy != "" {
			d.ReplacedBy = row.Def.ReplacedBy
		}
		if !row.Def.Sunset.IsZero() {
			d.Sunset = row.Def.Sunset.Format(time.DateOnly)
		}
		d.Differs = desc.Definition != nil && desc.Definition.Hash != row.Def.Hash
	} else if desc.Definition != nil {
		d.Words = "registered definition (no longer in the feature file): " + fieldsText(desc.Definition.Fields)
		d.YAML = registeredYAML(id, desc.Definition.Fields)
	}
	for _, v := range c.byName[row.Name] {
		vi := versionInfo{Row: v, Current: v.ID == id}
		if v.Def != nil {
			vi.Words = plainWords(v.Def)
		}
		d.Versions = append(d.Versions, vi)
	}
	d.Services = c.links(desc.Downstream, lineage.KindService)
	d.Datasets = c.links(desc.Downstream, lineage.KindDataset)
	d.Models = c.links(desc.Downstream, lineage.KindModel)
	d.Consumers = c.links(desc.Downstream, lineage.KindConsumer)
	for i := range d.Consumers {
		d.Consumers[i].Note = num(desc.Consumers[d.Consumers[i].Name]) + " keys looked up"
	}
	if sub, err := c.graph.Walk(lineage.NodeID(lineage.KindFeature, id), lineage.Both); err == nil {
		d.Lineage = lineageSVG(c, sub)
	}
	if u.o.Usage != nil {
		d.Usage = u.o.Usage.Stats(id, c.now, chartHours)
		d.UsageChart = usageSVG(d.Usage, c.now)
	}
	if u.o.Monitor != nil {
		m, ok := u.o.Monitor.Feature(id)
		if !ok {
			m = Monitoring{}
		}
		if sm, served := u.o.Monitor.(ServedMonitor); served {
			if figs := sm.Served(id); len(figs) > 0 {
				m.Figures, ok = append(m.Figures, figs...), true
			}
		}
		if ok {
			d.Monitoring = &m
			d.Distrib = distributionSVG(m.Now, m.Baseline)
		}
	}
	d.Curl, d.Feast, d.Backfill = examples(r, c, row, u.o.Tokens != nil)
	u.render(w, http.StatusOK, "feature", page{Title: id, Data: d})
}

func fieldsText(kv [][2]string) string {
	parts := make([]string, len(kv))
	for i, x := range kv {
		parts[i] = x[0] + "=" + x[1]
	}
	return strings.Join(parts, ", ")
}

// --- service, dataset, model

type objectData struct {
	Name     string
	Desc     lineage.Description
	Features []link
	Services []link
	Datasets []link
	Models   []link
	Lineage  template.HTML
	Dataset  *registry.Dataset
	Model    *registry.Model
	Service  *lineage.ServiceInfo
	Console  string // console link preset for a service
	Now      time.Time
}

func (u *UI) object(w http.ResponseWriter, r *http.Request, c *catalog, kind, name, tmpl, what string) (objectData, bool) {
	id := lineage.NodeID(kind, name)
	desc, err := lineage.Describe(id, c.graph, c.cfg, c.reg, c.consumers)
	if err != nil {
		u.notFound(w, r, "No "+what+" "+name+" is in the feature file or the catalog.")
		return objectData{}, false
	}
	all := append(slices.Clone(desc.Upstream), desc.Downstream...)
	d := objectData{Name: name, Desc: desc, Now: c.now,
		Features: c.links(all, lineage.KindFeature), Services: c.links(all, lineage.KindService),
		Datasets: c.links(all, lineage.KindDataset), Models: c.links(all, lineage.KindModel),
		Dataset: desc.Dataset, Model: desc.Model, Service: desc.Service}
	if sub, err := c.graph.Walk(id, lineage.Both); err == nil {
		d.Lineage = lineageSVG(c, sub)
	}
	return d, true
}

func (u *UI) handleService(w http.ResponseWriter, r *http.Request, c *catalog) {
	name := r.PathValue("name")
	if d, ok := u.object(w, r, c, lineage.KindService, name, "service", "feature service"); ok {
		d.Console = "/ui/console?service=" + name
		u.render(w, http.StatusOK, "service", page{Title: "Service " + name, Data: d})
	}
}

func (u *UI) handleDataset(w http.ResponseWriter, r *http.Request, c *catalog) {
	id := r.PathValue("id")
	if _, ok := c.reg.Dataset(id); !ok {
		u.notFound(w, r, "No dataset "+id+" is registered. Every backfill registers one (NAME@VERSION).")
		return
	}
	if d, ok := u.object(w, r, c, lineage.KindDataset, id, "dataset", "dataset"); ok {
		u.render(w, http.StatusOK, "dataset", page{Title: "Dataset " + id, Data: d})
	}
}

func (u *UI) handleModel(w http.ResponseWriter, r *http.Request, c *catalog) {
	id := r.PathValue("id")
	if _, ok := c.reg.Model(id); !ok {
		u.notFound(w, r, "No model "+id+" is registered (featurepipe models register).")
		return
	}
	if d, ok := u.object(w, r, c, lineage.KindModel, id, "model", "model"); ok {
		u.render(w, http.StatusOK, "model", page{Title: "Model " + id, Data: d})
	}
}

// --- source

type fieldInfo struct {
	schemas.Field
	Role     string // "event time", "entity key"
	Features []link
}

type sourceData struct {
	Name, Topic, EventTime, SchemaPath, SchemaName string
	Entity                                         string
	Fields                                         []fieldInfo
	Features                                       []link
	InFile                                         bool
	Lineage                                        template.HTML
}

func (u *UI) handleSource(w http.ResponseWriter, r *http.Request, c *catalog) {
	name := r.PathValue("name")
	d := sourceData{Name: name}
	if s, ok := c.cfg.Source(name); ok {
		d.InFile, d.Topic, d.EventTime, d.SchemaPath = true, s.Topic, s.EventTime, s.SchemaPath
		if s.Entity != nil {
			d.Entity = s.Entity.Name
		}
		if s.Schema != nil {
			d.SchemaName = s.Schema.Name
			for _, f := range s.Schema.Fields {
				fi := fieldInfo{Field: f}
				switch {
				case f.Name == s.EventTime:
					fi.Role = "event time (every feature)"
				case s.Entity != nil && f.Name == s.Entity.Key:
					fi.Role = "entity key of " + s.Entity.Name
				}
				for _, ft := range s.Features {
					if ft.Field == f.Name || ft.Where != "" && mentions(ft.Where, f.Name) {
						fi.Features = append(fi.Features, link{Name: ft.ID, URL: featureURL(ft.ID)})
					}
				}
				d.Fields = append(d.Fields, fi)
			}
		}
	}
	id := lineage.NodeID(lineage.KindSource, name)
	sub, err := c.graph.Walk(id, lineage.Both)
	if err != nil {
		u.notFound(w, r, "No source "+name+" is in the feature file or the catalog.")
		return
	}
	d.Features = c.links(sub.Nodes, lineage.KindFeature)
	if d.Topic == "" {
		for _, n := range sub.Nodes {
			if n.Kind == lineage.KindTopic {
				d.Topic = n.Name
			}
		}
	}
	d.Lineage = lineageSVG(c, sub)
	u.render(w, http.StatusOK, "source", page{Title: "Source " + name, Data: d})
}

// mentions reports whether expr names the field as a whole word.
func mentions(expr, field string) bool {
	isWord := func(b byte) bool {
		return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
	}
	for i := 0; ; {
		j := strings.Index(expr[i:], field)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(field)
		if (j == 0 || !isWord(expr[j-1])) && (end == len(expr) || !isWord(expr[end])) {
			return true
		}
		i = j + 1
	}
}

// --- entity

type entityData struct {
	Name, Key string
	Features  []*featureRow
	Shown     []*featureRow // the first searchLimit
	AllURL    string
	Sources   []link
	Services  []link
	Now       time.Time
}

func (u *UI) handleEntity(w http.ResponseWriter, r *http.Request, c *catalog) {
	name := r.PathValue("name")
	e, ok := c.cfg.Entity(name)
	d := entityData{Name: name, Now: c.now}
	if ok {
		d.Key = e.Key
	}
	for _, f := range c.features {
		if f.Entity == name {
			d.Features = append(d.Features, f)
		}
	}
	d.Shown = d.Features[:min(len(d.Features), searchLimit)]
	d.AllURL = Prefix + "?entity=" + url.QueryEscape(name) + "&all=1"
	if !ok && len(d.Features) == 0 {
		u.notFound(w, r, "No entity "+name+" is in the feature file or the catalog.")
		return
	}
	for _, s := range c.cfg.Sources {
		if s.Entity != nil && s.Entity.Name == name {
			d.Sources = append(d.Sources, link{Name: s.Name, URL: sourceURL(s.Name), Note: "topic " + s.Topic})
		}
	}
	for _, s := range c.cfg.Services {
		if s.Entity == name {
			d.Services = append(d.Services, link{Name: s.Name, URL: serviceURL(s.Name), Note: s.Description})
		}
	}
	u.render(w, http.StatusOK, "entity", page{Title: "Entity " + name, Data: d})
}

// --- console

type consoleEntity struct {
	Name, Key string
	Features  []string // names (newest ready version) and name@version
}

type consoleData struct {
	Entities []consoleEntity
	Services []*config.Service
	// Preset from the query string: entity, keys, features, service.
	Entity, Keys, Service string
	Features              []string
	Enabled               bool
}

func (u *UI) handleConsole(w http.ResponseWriter, r *http.Request, c *catalog) {
	v := r.URL.Query()
	d := consoleData{Services: c.cfg.Services, Entity: v.Get("entity"), Keys: v.Get("keys"), Service: v.Get("service"),
		Features: v["feature"], Enabled: u.o.API != nil}
	for _, e := range c.cfg.Entities {
		ce := consoleEntity{Name: e.Name, Key: e.Key}
		seen := map[string]bool{}
		for _, f := range c.cfg.EntityFeatures(e.Name) {
			if !seen[f.Name] {
				seen[f.Name] = true
				ce.Features = append(ce.Features, f.Name)
			}
		}
		for _, f := range c.cfg.EntityFeatures(e.Name) {
			ce.Features = append(ce.Features, f.ID)
		}
		d.Entities = append(d.Entities, ce)
	}
	if d.Service != "" && d.Entity == "" {
		if s, err := c.cfg.Service(d.Service); err == nil {
			d.Entity = s.Entity
		}
	}
	u.render(w, http.StatusOK, "console", page{Title: "Lookup console", Nav: "console", Data: d})
}

// consoleConsumer names the console's lookups in the lookup log when the
// API has no tokens (with tokens, the token's consumer is used).
const consoleConsumer = "featurepipe-ui"

// handleLookupProxy forwards the console's lookup to the API's POST
// /v1/lookup, with the cookie's token as the Bearer token: the answer, its
// status and the token's scopes are the API's own.
func (u *UI) handleLookupProxy(w http.ResponseWriter, r *http.Request) {
	if u.o.API == nil {
		http.Error(w, "the lookup console is not available on this server", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "body_too_large", "message": "the request body is over 1 MiB"}})
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, "/v1/lookup", strings.NewReader(string(body)))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if u.o.Tokens != nil {
		req.Header.Set("Authorization", "Bearer "+token(r))
	} else {
		req.Header.Set("X-Featurepipe-Consumer", consoleConsumer)
	}
	req.RemoteAddr = r.RemoteAddr
	u.o.API.ServeHTTP(w, req)
}
