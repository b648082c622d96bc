// Package feastrepo writes a Feast feature repository that points the Feast
// SDK at featurepipe: feature_store.yaml with Feast's remote online store
// (featurepipe serve's POST /get-online-features) and remote offline store
// (featurepipe serve --flight), and the Python definitions of the feature
// file's entities and features, generated from templates (text/template), so
// that no one writes Feast code by hand.
//
// The mapping, one to one with the feature file:
//
//   - each entity is a Feast Entity whose join key is the entity's key field,
//     with value type STRING (featurepipe keys are strings);
//   - each source that feeds features is one FeatureView named after the
//     source (a source feeds exactly one entity), with one Field per feature
//     name: Int64 for count, Array(Float64) for first_k and last_k (Feast's
//     DOUBLE_LIST: the lookup service answers a JSON array of floats, the
//     Flight server an Arrow list<double>), Float64 otherwise; a feature
//     whose output type (config.Feature.OutputType) is a long is Int64
//     (Array(Int64) for a list), a boolean Bool (Array(Bool)), a string
//     String (Array(String)); a bucketed feature (config.Feature.Bucket)
//     is Map (Feast's MAP, string keys: the lookup service answers a JSON
//     object, null for an empty map, which the Feast SDK cannot read; the
//     Flight server an Arrow map<utf8, value>), a bucketed first_k, last_k
//     or top_k too (a map of lists; a top_k bucket a list of {value,
//     count} objects, Arrow list<struct<value, count>>); typed and
//     described after the version a bare name resolves to (the newest not
//     deprecated; online, the newest ready one). Its batch source is a FileSource
//     placeholder that is never read: Feast requires one, and the remote
//     offline store sends every read to featurepipe;
//   - each feature service (services: in the feature file) is a Feast
//     FeatureService of the same name, owner and description, whose features
//     are projections of the source views (view[["name", ...]]), when every
//     reference it lists is a bare name or pins the version a bare name
//     reads: then the view's field is exactly that version offline (the
//     remote offline store sends view:name) and the lookup service answers
//     the service's own references online (SDK 0.64+ sends the service's
//     name). A service that pins any other version cannot be expressed with
//     the generated views (a field is one version): it is not generated; the
//     definitions file says why in a comment and Options.Warn is told.
package feastrepo

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
)

// Options says where the repository's stores point.
type Options struct {
	// Project is the Feast project name. Default "featurepipe".
	Project string
	// URL is the lookup service's base URL (http://host:port), required.
	URL string
	// Flight is the host:port of featurepipe serve --flight, required.
	Flight string
	// Warn, if set, is called once per feature service that is not
	// generated, with the reason (the generated file has it as a comment
	// too). Default: nil, the comment only.
	Warn func(msg string)
}

// Files are the generated repository files, by name.
const (
	StoreYAML   = "feature_store.yaml"
	Definitions = "featurepipe_features.py"
)

//go:embed feature_store.yaml.tmpl
var storeText string

//go:embed features.py.tmpl
var defsText string

var (
	storeTmpl = template.Must(template.New(StoreYAML).Parse(storeText))
	defsTmpl  = template.Must(template.New(Definitions).Parse(defsText))
)

// pyName is what a Python identifier and a Feast object name may be.
var pyName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

type entityData struct{ Var, Name, JoinKey string }

type fieldData struct{ Name, Type, Description string }

type viewData struct {
	Var, Name, Entity, Topic string // Entity: the Python list of the view's entities' variables
	Fields                   []fieldData
}

// ViewName is the Feast feature view of a feature: its source's name for a
// feature of the entity the source's Kafka key identifies, else
// <source>_<entity> (a Feast view has one set of entities).
func ViewName(f *config.Feature) string {
	if f.Repartition == nil {
		return f.Source
	}
	return f.Source + "_" + f.Entity
}

// entityVars are the Python variables of e's Feast entities: one per join
// key, as Feast's entities have one join key each (a composite entity's
// views list them all).
func entityVars(e *config.Entity) []string {
	if !e.Composite() {
		return []string{"entity_" + e.Name}
	}
	out := make([]string, len(e.Keys))
	for i, k := range e.Keys {
		out[i] = "entity_" + e.Name + "__" + k
	}
	return out
}

// projectionData is one feature view's part of a feature service.
type projectionData struct {
	View   string   // the view's Python variable
	Fields []string // field names, in the service's order
}

type serviceData struct {
	Var, Name, Owner, Description, Features string
	Projections                             []projectionData
}

type repoData struct {
	Project, URL, FlightHost string
	FlightPort               int
	Entities                 []entityData
	Views                    []viewData
	Services                 []serviceData
	// Skipped are the comments of the services not generated.
	Skipped []string
	// HasMap: some field is a Map (a bucketed feature); only then is Map
	// imported.
	HasMap bool
}

// Write writes the repository into dir (created if missing; existing
// generated files are overwritten, nothing else is touched).
func Write(dir string, cfg *config.File, o Options) error {
	data, err := build(cfg, o)
	if err != nil {
		return err
	}
	files := map[string]*template.Template{StoreYAML: storeTmpl, Definitions: defsTmpl}
	out := map[string][]byte{}
	for name, t := range files {
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return fmt.Errorf("render %s: %w", name, err)
		}
		out[name] = b.Bytes()
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return fmt.Errorf("create the repository directory: %w", err)
	}
	for name, b := range out {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// build maps the feature file and o to the templates' data, checking every
// name the Python code will use.
func build(cfg *config.File, o Options) (*repoData, error) {
	if o.Project == "" {
		o.Project = "featurepipe"
	}
	if !pyName.MatchString(o.Project) {
		return nil, fmt.Errorf("project %q: use letters, digits and underscores", o.Project)
	}
	u, err := url.Parse(o.URL)
	if o.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("lookup URL %q: want http://host:port, where featurepipe serve listens", o.URL)
	}
	host, portText, err := net.SplitHostPort(o.Flight)
	port, perr := strconv.Atoi(portText)
	if o.Flight == "" || err != nil || host == "" || perr != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("flight address %q: want host:port, where featurepipe serve --flight listens", o.Flight)
	}
	d := &repoData{Project: o.Project, URL: o.URL, FlightHost: host, FlightPort: port}
	for _, e := range cfg.Entities {
		for _, k := range e.Keys {
			if !pyName.MatchString(e.Name) || !pyName.MatchString(k) {
				return nil, fmt.Errorf("entity %s (key %s): Feast needs names of letters, digits and underscores", e.Name, k)
			}
		}
		if !e.Composite() {
			d.Entities = append(d.Entities, entityData{Var: "entity_" + e.Name, Name: e.Name, JoinKey: e.Key})
			continue
		}
		for i, v := range entityVars(e) {
			d.Entities = append(d.Entities, entityData{Var: v, Name: strings.TrimPrefix(v, "entity_"), JoinKey: e.Keys[i]})
		}
	}
	for _, src := range cfg.Sources {
		if src.Entity == nil || len(src.Features) == 0 {
			continue
		}
		if !pyName.MatchString(src.Name) {
			return nil, fmt.Errorf("source %s: Feast needs a feature view name of letters, digits and underscores", src.Name)
		}
		views := map[string]*viewData{}
		var order []string
		seen := map[string]bool{}
		for _, f := range src.Features {
			if seen[f.Name] {
				continue // another version: the field is the bare name
			}
			seen[f.Name] = true
			name := ViewName(f)
			v := views[name]
			if v == nil {
				v = &viewData{Var: "view_" + name, Name: name, Entity: strings.Join(entityVars(f.EntityRef), ", "), Topic: src.Topic}
				views[name] = v
				order = append(order, name)
			}
			// The version a bare name reads (its type and description).
			def, err := cfg.Feature(f.Name)
			if err != nil {
				return nil, err
			}
			typ := "Float64"
			switch def.OutputType() { // last, first, first_k, last_k of a long, boolean or string field
			case aggregations.TypeLong:
				typ = "Int64"
			case aggregations.TypeBool:
				typ = "Bool"
			case aggregations.TypeString:
				typ = "String"
			}
			switch {
			case def.Bucket != "": // a map from bucket to value (of lists too): Feast's Map (MAP, Dict[str, Any])
				typ, d.HasMap = "Map", true
			case def.Aggregation == aggregations.Count:
				typ = "Int64"
			case def.Aggregation == aggregations.TopK:
				// The JSON text of the list of {value, count}, as the lookup
				// API writes it: Feast 0.62+ has Json and Struct types, but
				// String reads the same in every Feast version this targets.
				typ = "String"
			case def.Aggregation.List():
				typ = "Array(" + typ + ")"
			}
			v.Fields = append(v.Fields, fieldData{Name: f.Name, Type: typ, Description: def.Description})
		}
		for _, name := range order {
			d.Views = append(d.Views, *views[name])
		}
	}
	if len(d.Views) == 0 {
		return nil, errors.New("the feature file defines no feature: nothing to write")
	}
	for _, svc := range cfg.Services {
		sd, why, err := service(cfg, svc)
		if err != nil {
			return nil, err
		}
		if why != "" {
			d.Skipped = append(d.Skipped, why)
			if o.Warn != nil {
				o.Warn(why)
			}
			continue
		}
		d.Services = append(d.Services, *sd)
	}
	return d, nil
}

// service maps a feature service to a Feast FeatureService over the
// generated views, or says why it cannot be (why != "").
func service(cfg *config.File, svc *config.Service) (sd *serviceData, why string, err error) {
	if !pyName.MatchString(svc.Name) {
		return nil, "", fmt.Errorf("feature service %s: Feast needs names of letters, digits and underscores", svc.Name)
	}
	sd = &serviceData{Var: "service_" + svc.Name, Name: svc.Name, Owner: svc.Owner, Description: svc.Description,
		Features: strings.Join(svc.Features, ", ")}
	at := map[string]int{} // view name -> index in sd.Projections
	for _, ref := range svc.Features {
		ft, err := cfg.Feature(ref)
		if err != nil {
			return nil, "", fmt.Errorf("feature service %s: %w", svc.Name, err)
		}
		def, err := cfg.Feature(ft.Name)
		if err != nil {
			return nil, "", fmt.Errorf("feature service %s: %w", svc.Name, err)
		}
		if ft.IsDerived() {
			return nil, fmt.Sprintf("feature service %s is not generated: it lists derived feature %s, which has no source and so no feature view; "+
				`read the service with featurepipe's POST /v1/lookup {"feature_service": %q} or featurepipe backfill --feature-service %s`,
				svc.Name, ref, svc.Name, svc.Name), nil
		}
		if def.ID != ft.ID {
			return nil, fmt.Sprintf("feature service %s is not generated: it lists %s, but feature view %s's field %s reads %s "+
				"(the version a bare name reads), and a field is one version; read the service with featurepipe's "+
				`POST /v1/lookup {"feature_service": %q} or featurepipe backfill --feature-service %s`,
				svc.Name, ref, ft.Source, ft.Name, def.ID, svc.Name, svc.Name), nil
		}
		j, ok := at[ViewName(ft)]
		if !ok {
			j = len(sd.Projections)
			at[ViewName(ft)] = j
			sd.Projections = append(sd.Projections, projectionData{View: "view_" + ViewName(ft)})
		}
		sd.Projections[j].Fields = append(sd.Projections[j].Fields, ft.Name)
	}
	return sd, "", nil
}
