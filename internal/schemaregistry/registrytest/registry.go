// Package registrytest is a small schema registry for tests that follows
// Confluent Schema Registry's documented REST API (Confluent's "Schema
// Registry API Reference") closely enough for Confluent's own serializers
// (confluent-kafka's SchemaRegistryClient, the Java KafkaAvroSerializer) and
// for featurepipe's client. It exists because no real Confluent-compatible
// registry can be run here: Apicurio Registry's application needs
// io.apicurio:apicurio-registry-schema-util-provider, which the Maven
// repository this project builds from does not serve in any version, and
// neither Confluent's registry nor Karapace is published to a registry we
// can reach.
//
// Served, in memory, Avro only:
//
//	POST /subjects/{subject}/versions          register; {"id": N}
//	POST /subjects/{subject}                   look a schema up under subject
//	GET  /subjects                             subject names
//	GET  /subjects/{subject}/versions          version numbers
//	GET  /subjects/{subject}/versions/{v}      v a number or "latest"
//	GET  /schemas/ids/{id}                     {"schema": "..."}
//	GET  /schemas/ids/{id}/versions            [{"subject","version"}]
//	GET  /config, /config/{subject}            {"compatibilityLevel": ...}
//	PUT  /config, /config/{subject}            {"compatibility": ...}
//
// Errors are JSON {"error_code": N, "message": "..."}: 40401 subject not
// found, 40402 version not found, 40403 schema not found, 42201 invalid
// schema, 42203 invalid compatibility level, 409 incompatible schema, 401
// unauthorized. As in Confluent's registry, an id names one schema text
// (the same schema under two subjects has one id), registering a schema a
// subject already has returns its id, and the default compatibility level
// BACKWARD refuses a new version that cannot read the latest one (checked
// with Avro resolution over all fields, schemas.Resolve); NONE turns that
// off.
package registrytest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/featurepipe/featurepipe/schemas"
)

// Registry is the in-memory registry. Safe for concurrent use.
type Registry struct {
	// Username and Password, when Username is set, are required with
	// HTTP basic authentication on every request.
	Username, Password string

	mu       sync.Mutex
	ids      []string          // id-1 -> schema text as first registered
	byCanon  map[string]int    // Parsing Canonical Form -> id
	subjects map[string][]int  // subject -> ids, one per version (version = index+1)
	compat   map[string]string // subject -> level; "" key: global
	requests atomic.Int64      // every request served
	idGets   map[int]int       // id -> GET /schemas/ids/{id} served
	parsed   map[int]*schemas.Schema
}

// New returns an empty registry with compatibility BACKWARD.
func New() *Registry {
	return &Registry{byCanon: map[string]int{}, subjects: map[string][]int{}, compat: map[string]string{"": "BACKWARD"}, idGets: map[int]int{}, parsed: map[int]*schemas.Schema{}}
}

// Start serves r on 127.0.0.1 until the returned close function is called;
// url is its base URL.
func (r *Registry) Start() (baseURL string, closeFn func()) {
	srv := httptest.NewServer(r)
	return srv.URL, srv.Close
}

// Requests is the number of requests served so far.
func (r *Registry) Requests() int64 { return r.requests.Load() }

// IDFetches is how many times GET /schemas/ids/{id} was served for id.
func (r *Registry) IDFetches(id int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.idGets[id]
}

type apiError struct {
	status int
	code   int
	msg    string
}

func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	if r.Username != "" {
		if u, p, ok := req.BasicAuth(); !ok || u != r.Username || p != r.Password {
			writeErr(w, apiError{http.StatusUnauthorized, 401, "Unauthorized"})
			return
		}
	}
	parts := strings.Split(strings.Trim(req.URL.EscapedPath(), "/"), "/")
	for i, p := range parts {
		if u, err := url.PathUnescape(p); err == nil {
			parts[i] = u
		}
	}
	out, aerr := r.route(req, parts)
	if aerr != nil {
		writeErr(w, *aerr)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	_ = json.NewEncoder(w).Encode(out)
}

func (r *Registry) route(req *http.Request, p []string) (any, *apiError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := req.Method
	switch {
	case len(p) == 1 && p[0] == "subjects" && m == http.MethodGet:
		names := make([]string, 0, len(r.subjects))
		for s := range r.subjects {
			names = append(names, s)
		}
		sort.Strings(names)
		return names, nil
	case len(p) == 3 && p[0] == "subjects" && p[2] == "versions" && m == http.MethodPost:
		return r.register(req, p[1])
	case len(p) == 2 && p[0] == "subjects" && m == http.MethodPost:
		return r.lookup(req, p[1])
	case len(p) == 3 && p[0] == "subjects" && p[2] == "versions" && m == http.MethodGet:
		ids, ok := r.subjects[p[1]]
		if !ok {
			return nil, subjectNotFound(p[1])
		}
		vs := make([]int, len(ids))
		for i := range ids {
			vs[i] = i + 1
		}
		return vs, nil
	case len(p) == 4 && p[0] == "subjects" && p[2] == "versions" && m == http.MethodGet:
		ids, ok := r.subjects[p[1]]
		if !ok {
			return nil, subjectNotFound(p[1])
		}
		v := len(ids)
		if p[3] != "latest" {
			n, err := strconv.Atoi(p[3])
			if err != nil || n < 1 || n > len(ids) {
				return nil, &apiError{http.StatusNotFound, 40402, "Version " + p[3] + " not found."}
			}
			v = n
		}
		id := ids[v-1]
		return map[string]any{"subject": p[1], "version": v, "id": id, "schema": r.ids[id-1]}, nil
	case len(p) == 3 && p[0] == "schemas" && p[1] == "ids" && m == http.MethodGet:
		id, err := strconv.Atoi(p[2])
		if err != nil || id < 1 || id > len(r.ids) {
			return nil, &apiError{http.StatusNotFound, 40403, "Schema " + p[2] + " not found"}
		}
		r.idGets[id]++
		return map[string]any{"schema": r.ids[id-1]}, nil
	case len(p) == 4 && p[0] == "schemas" && p[1] == "ids" && p[3] == "versions" && m == http.MethodGet:
		id, err := strconv.Atoi(p[2])
		if err != nil || id < 1 || id > len(r.ids) {
			return nil, &apiError{http.StatusNotFound, 40403, "Schema " + p[2] + " not found"}
		}
		var out []map[string]any
		for s, ids := range r.subjects {
			for i, x := range ids {
				if x == id {
					out = append(out, map[string]any{"subject": s, "version": i + 1})
				}
			}
		}
		return out, nil
	case (len(p) == 1 || len(p) == 2) && p[0] == "config":
		subject := ""
		if len(p) == 2 {
			subject = p[1]
		}
		if m == http.MethodPut {
			var body struct {
				Compatibility string `json:"compatibility"`
			}
			if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
				return nil, &apiError{http.StatusUnprocessableEntity, 42203, "Invalid compatibility level"}
			}
			switch body.Compatibility {
			case "NONE", "BACKWARD":
			default:
				return nil, &apiError{http.StatusUnprocessableEntity, 42203, "Invalid compatibility level " + body.Compatibility + " (this test registry knows NONE and BACKWARD)"}
			}
			r.compat[subject] = body.Compatibility
			return map[string]string{"compatibility": body.Compatibility}, nil
		}
		if m == http.MethodGet {
			level, ok := r.compat[subject]
			if !ok {
				if subject != "" {
					return nil, &apiError{http.StatusNotFound, 40408, "Subject '" + subject + "' does not have subject-level compatibility configured"}
				}
			}
			return map[string]string{"compatibilityLevel": level}, nil
		}
	}
	return nil, &apiError{http.StatusNotFound, 404, "HTTP 404 Not Found"}
}

// parseBody reads {"schema": "...", "schemaType": ...} and parses the schema.
func parseBody(req *http.Request) (string, *schemas.Schema, *apiError) {
	var body struct {
		Schema     string `json:"schema"`
		SchemaType string `json:"schemaType"`
		References []any  `json:"references"`
	}
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
		return "", nil, &apiError{http.StatusUnprocessableEntity, 42201, "Invalid schema: " + err.Error()}
	}
	if body.SchemaType != "" && body.SchemaType != "AVRO" {
		return "", nil, &apiError{http.StatusUnprocessableEntity, 42201, "Invalid schema: this test registry holds Avro schemas only"}
	}
	if len(body.References) > 0 {
		return "", nil, &apiError{http.StatusUnprocessableEntity, 42201, "Invalid schema: references are not supported by this test registry"}
	}
	s, err := schemas.Parse([]byte(body.Schema))
	if err != nil {
		return "", nil, &apiError{http.StatusUnprocessableEntity, 42201, "Invalid schema: " + err.Error()}
	}
	return body.Schema, s, nil
}

func (r *Registry) register(req *http.Request, subject string) (any, *apiError) {
	text, s, aerr := parseBody(req)
	if aerr != nil {
		return nil, aerr
	}
	canon := s.CanonicalForm()
	id, known := r.byCanon[canon]
	versions := r.subjects[subject]
	for _, x := range versions {
		if known && x == id {
			return map[string]int{"id": id}, nil // already a version of subject
		}
	}
	level, ok := r.compat[subject]
	if !ok {
		level = r.compat[""]
	}
	if level == "BACKWARD" && len(versions) > 0 {
		latest := r.parsed[versions[len(versions)-1]]
		if _, err := schemas.Resolve(latest, s, nil); err != nil {
			return nil, &apiError{http.StatusConflict, 409, "Schema being registered is incompatible with an earlier schema for subject \"" + subject + "\": " + err.Error()}
		}
	}
	if !known {
		r.ids = append(r.ids, text)
		id = len(r.ids)
		r.byCanon[canon] = id
		r.parsed[id] = s
	}
	r.subjects[subject] = append(versions, id)
	return map[string]int{"id": id}, nil
}

func (r *Registry) lookup(req *http.Request, subject string) (any, *apiError) {
	versions, ok := r.subjects[subject]
	if !ok {
		return nil, subjectNotFound(subject)
	}
	text, s, aerr := parseBody(req)
	if aerr != nil {
		return nil, aerr
	}
	_ = text
	id, known := r.byCanon[s.CanonicalForm()]
	for i, x := range versions {
		if known && x == id {
			return map[string]any{"subject": subject, "version": i + 1, "id": id, "schema": r.ids[id-1]}, nil
		}
	}
	return nil, &apiError{http.StatusNotFound, 40403, "Schema not found"}
}

func subjectNotFound(s string) *apiError {
	return &apiError{http.StatusNotFound, 40401, "Subject '" + s + "' not found."}
}

func writeErr(w http.ResponseWriter, e apiError) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error_code": e.code, "message": e.msg})
}
