package lookup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/metrics"
)

// Feature value statuses in lookup responses.
const (
	StatusPresent     = "PRESENT"      // at least one event in the window
	StatusEmptyWindow = "EMPTY_WINDOW" // the entity is known but no event is in the window: count/sum 0, others null
	StatusNotFound    = "NOT_FOUND"    // no event of this entity with ts < T exists (in any source): the value is null
	StatusWarmingUp   = "WARMING_UP"   // the version is still being bootstrapped from history: the value is partial
	StatusExpired     = "EXPIRED"      // the newest event in the window is older than the feature's ttl: the empty-window value
)

// apiError is an error with an HTTP status and a stable code, written as
// {"error":{"code":..., "message":...}} by the one response path.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/lookup", s.endpoint("lookup", s.handleLookup))
	mux.Handle("GET /v1/features/{entity}/{key}", s.endpoint("entity", s.handleEntity))
	mux.Handle("POST /get-online-features", s.endpoint("feast", s.handleFeast))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			writeError(w, &apiError{http.StatusServiceUnavailable, "not_ready", "catching up with the feature log and the feature registry"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if s.o.Gatherer != nil {
		mux.Handle("GET /metrics", metrics.Handler(s.o.Gatherer))
	}
	for path, allow := range map[string]string{
		"/v1/lookup": "POST", "/v1/features/{entity}/{key}": "GET", "/get-online-features": "POST",
		"/healthz": "GET", "/readyz": "GET", "/metrics": "GET",
	} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, &apiError{http.StatusMethodNotAllowed, "method_not_allowed",
				fmt.Sprintf("%s %s is not supported; use %s", r.Method, r.URL.Path, allow)})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{http.StatusNotFound, "not_found",
			fmt.Sprintf("no route %s %s; routes: POST /v1/lookup, GET /v1/features/{entity}/{key}, POST /get-online-features, GET /healthz, /readyz, /metrics", r.Method, r.URL.Path)})
	})
	return mux
}

// handler is a route's logic. It returns its error, or the answer it
// served (for the lookup log; the endpoint releases it) and the response to
// write: resp, written with encoding/json, or, if resp is nil, served
// itself (with its hand-written encoder).
type handler func(*http.Request) (resp any, served *lookupAnswer, err error)

// endpoint is the one response path: it checks readiness, bounds the body,
// times the handler, and writes either its result or its error as JSON.
// After a successful answer it logs the served values (see lookupLogger).
func (s *Service) endpoint(route string, h handler) http.Handler {
	hist := s.m.Latency.WithLabelValues(route)
	ok := s.m.Requests.WithLabelValues(route, "200")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		var code int
		var served *lookupAnswer
		tok, authErr := s.o.Tokens.authenticate(r) // (nil, nil) without tokens: open
		var consumer string
		var consumerErr *apiError
		if authErr == nil {
			consumer, consumerErr = consumerName(r, tok)
		}
		if authErr != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="featurepipe"`)
			code = writeError(w, authErr)
		} else if consumerErr != nil {
			code = writeError(w, consumerErr)
		} else if !s.ready.Load() {
			code = writeError(w, &apiError{http.StatusServiceUnavailable, "not_ready", "the lookup view is still catching up with the feature log and the feature registry; retry shortly"})
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, s.o.MaxBodyBytes)
			var resp any
			var err error
			resp, served, err = h(r)
			if err == nil && tok != nil { // scopes: see auth.go
				if aerr := tok.permit(served); aerr != nil {
					err, resp = aerr, nil
					if served != nil {
						served.release()
						served = nil
					}
				}
			}
			if err == nil && served != nil {
				served.consumer, served.request = consumer, s.requests.Add(1)
				s.count(served)
			}
			switch {
			case err != nil:
				code = writeError(w, err)
			case resp != nil:
				code = writeJSON(w, http.StatusOK, resp)
			default:
				code = writeAnswer(w, served)
			}
		}
		hist.Observe(time.Since(t0).Seconds())
		if code == http.StatusOK {
			ok.Inc()
		} else {
			s.m.Requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		}
		if served != nil {
			s.logLookups(served)
			served.release()
		}
	})
}

var contentTypeJSON = []string{"application/json"}

// writeAnswer writes a lookup answer with the hand-written encoder: one
// pooled buffer, one Write, a Content-Length (no chunking). featurepipe's
// server (internal/httpserve) buffers every response and frames it with
// its length; under net/http's server (httptest, or a caller's own),
// net/http adds the Content-Length itself, without allocating, when the
// handler's whole output fits its response buffer
// (bufferBeforeChunkingSize, 2 KiB, for HTTP/1.1; 4 KiB for HTTP/2) and
// the handler returns without flushing: the answer sets it explicitly only
// when it is larger (TestAnswerHasContentLength).
func writeAnswer(w http.ResponseWriter, a *lookupAnswer) int {
	bp := bufPool.Get().(*[]byte)
	b := a.appendJSON((*bp)[:0])
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	if len(b) > autoContentLength {
		h["Content-Length"] = []string{strconv.Itoa(len(b))}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	if cap(b) <= 64<<10 { // do not pool the buffers of huge answers
		*bp = b
		bufPool.Put(bp)
	}
	return http.StatusOK
}

// autoContentLength is the largest response net/http frames with a
// Content-Length of its own (see writeAnswer).
const autoContentLength = 2048

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func writeJSON(w http.ResponseWriter, status int, v any) int {
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
	return status
}

func writeError(w http.ResponseWriter, err error) int {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{http.StatusInternalServerError, "internal", err.Error()}
	}
	return writeJSON(w, ae.status, map[string]any{"error": map[string]string{"code": ae.code, "message": ae.message}})
}

// decodeBody decodes exactly one JSON object into v, rejecting trailing
// data and oversized bodies with a 4xx, and unknown fields too when strict
// (POST /v1/lookup: a misspelt field is an error, not a silent default).
// Feast's endpoint is not strict: the Feast SDK sends fields featurepipe
// does not use (e.g. include_feature_view_version_metadata), which Feast's
// own server ignores too. The Content-Type is not checked, so a plain
// `curl -d '{...}'` works.
func decodeBody(body io.Reader, v any, strict bool) error {
	dec := json.NewDecoder(body)
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
		}
		if errors.Is(err, io.EOF) {
			return badRequest("malformed_body", "empty body: send a JSON object")
		}
		return badRequest("malformed_body", "invalid JSON body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
		}
		return badRequest("malformed_body", "unexpected data after the JSON object")
	}
	return nil
}

// LookupRequest is the body of POST /v1/lookup. In JSON, a key of a
// composite entity is an object of its key fields,
// {"user_id":"u1","merchant_id":"m9"} (see entitykeys.go); from Go, give
// the entity key string keys.EntityKey builds, or post the JSON yourself.
type LookupRequest struct {
	Entity   string   `json:"entity"`
	Keys     []string `json:"keys"`
	Features []string `json:"features"` // "name" (newest ready version) or "name@version"
	// FeatureService names a feature service of the feature file instead of
	// Features: the answer holds exactly the service's features.
	FeatureService string `json:"feature_service,omitempty"`
}

// LookupResponse is the answer of POST /v1/lookup and GET /v1/features.
type LookupResponse struct {
	AsOf     time.Time   `json:"as_of"`
	Results  []KeyResult `json:"results"`
	Warnings []string    `json:"warnings,omitempty"`
}

// KeyResult holds the features of one entity key, by the name the request used.
type KeyResult struct {
	Key      string                  `json:"key"`
	Features map[string]FeatureValue `json:"features"`
}

// FeatureValue is one feature's value as of the request time.
//
// A list feature (first_k, last_k) has its value in List, written as a
// JSON array under "value" (see MarshalJSON); Value is then nil.
type FeatureValue struct {
	Value *float64  `json:"value"`
	List  []float64 `json:"-"`
	// Str and Strs are the value of a string feature (Type TypeString:
	// last, first, first_k, last_k of a string field), written as a JSON
	// string or array of strings; Value and List are then nil.
	Str  *string  `json:"-"`
	Strs []string `json:"-"`
	// Top is the value of a top_k feature, most frequent first, written as
	// a JSON array of {"value": v, "count": n} objects (v typed by Type);
	// the other value fields are then nil.
	Top []TopValue `json:"-"`
	// Buckets is the value of a bucketed feature (config.Feature.Bucket),
	// written as a JSON object from bucket key to each bucket's value
	// ({"atm": 12.5, "grocery": 3.0, "__other__": 1.0}); each entry holds
	// only its value and Type. Value, List, Str and Strs are then nil. An
	// empty map is the empty window of count, sum and approx_distinct.
	Buckets map[string]FeatureValue `json:"-"`
	// Type is the feature's output type (config.Feature.OutputType): JSON
	// writes a TypeBool value (or list element) as true or false (Value 1
	// or 0), every other type as a number (a TypeLong one is whole, exact).
	Type      aggregations.ValueType `json:"-"`
	Status    string                 `json:"status"`
	Version   int                    `json:"version"`
	UpdatedAt *time.Time             `json:"updated_at,omitempty"`
}

func (s *Service) entity(name string) (*entityInfo, error) {
	if name == "" {
		return nil, badRequest("missing_entity", `"entity" is required; entities: %s`, s.entityNames())
	}
	info, ok := s.entities[name]
	if !ok {
		return nil, &apiError{http.StatusNotFound, "unknown_entity", fmt.Sprintf("unknown entity %q; entities: %s", name, s.entityNames())}
	}
	return info, nil
}

func (s *Service) entityNames() string {
	names := make([]string, 0, len(s.o.Config.Entities))
	for _, e := range s.o.Config.Entities {
		names = append(names, e.Name)
	}
	return strings.Join(names, ", ")
}

// resolve appends to a.feats the definitions of the entity the requested
// feature references resolve to (see pick), and to a.warnings the warning of
// each deprecated one. It allocates nothing once a's slices are warm.
func (s *Service) resolve(a *lookupAnswer, info *entityInfo, refs []string) error {
	if len(refs) == 0 {
		return badRequest("missing_features", `"features" must name at least one feature of entity %s, or "feature_service" a feature service`, info.name)
	}
	for _, ref := range refs {
		f, err := s.pick(ref)
		if err != nil {
			return &apiError{http.StatusNotFound, "unknown_feature", err.Error()}
		}
		if f.def.Entity != info.name {
			return badRequest("wrong_entity", "feature %s belongs to entity %s, not %s", f.def.ID, f.def.Entity, info.name)
		}
		if f.warning != "" {
			a.warnings = append(a.warnings, f.warning)
			if f.warned.CompareAndSwap(false, true) {
				s.log.Warn("deprecated feature looked up (logged once per version; featurepipe_deprecated_lookups_total counts them per consumer)",
					zap.String("feature", f.def.ID), zap.String("replaced_by", f.def.ReplacedBy), zap.String("warning", f.warning))
			}
		}
		a.feats = append(a.feats, f)
	}
	return nil
}

// lookup answers keys of info for the feature references refs: a pooled
// answer the caller releases (the endpoint does), or an error.
func (s *Service) lookup(info *entityInfo, keys, refs []string) (*lookupAnswer, error) {
	a := answerPool.Get().(*lookupAnswer)
	if err := s.lookupInto(a, info, keys, refs); err != nil {
		a.release()
		return nil, err
	}
	return a, nil
}

// lookupInto is lookup into a (from answerPool) that the caller releases.
func (s *Service) lookupInto(a *lookupAnswer, info *entityInfo, keys, refs []string) error {
	if err := s.resolve(a, info, refs); err != nil {
		return err
	}
	return s.answer(a, info, keys, refs)
}

func (s *Service) checkKeys(n int) error {
	if n == 0 {
		return badRequest("missing_keys", `"keys" must list at least one entity key`)
	}
	if n > s.o.MaxKeys {
		return badRequest("too_many_keys", "%d keys in one request; the limit is %d", n, s.o.MaxKeys)
	}
	return nil
}

func (s *Service) handleLookup(r *http.Request) (any, *lookupAnswer, error) {
	a := answerPool.Get().(*lookupAnswer)
	if err := s.answerBody(r, a); err != nil {
		a.release()
		return nil, nil, err
	}
	return nil, a, nil
}

// answerBody decodes a POST /v1/lookup body (see decodeLookup) and answers
// it into a. The checks and their order, so which error a bad request
// gets, are the same whichever decoder read the body.
func (s *Service) answerBody(r *http.Request, a *lookupAnswer) error {
	body, err := decodeLookup(r, a.reqKeys[:0], a.reqFeatures[:0], !s.jsonOnly)
	if body.plain { // keep the grown slices for the next request
		a.reqKeys, a.reqFeatures = body.keys, body.features
	}
	if err != nil {
		return err
	}
	info, err := s.entity(body.entity)
	if err != nil {
		return err
	}
	if err := s.checkKeys(body.numKeys()); err != nil {
		return err
	}
	keyList := body.keys
	switch {
	case !body.plain:
		if keyList, err = requestKeys(info, body.raw); err != nil {
			return err
		}
	case len(info.keys) > 1:
		return compositeKeyError(info, 0)
	}
	refs, err := s.requestedFeatures(info, body.service, body.features)
	if err != nil {
		return err
	}
	if err := s.lookupInto(a, info, keyList, refs); err != nil {
		return err
	}
	a.service = body.service
	return nil
}

func (s *Service) handleEntity(r *http.Request) (any, *lookupAnswer, error) {
	info, err := s.entity(r.PathValue("entity"))
	if err != nil {
		return nil, nil, err
	}
	if info.latestErr != nil {
		return nil, nil, info.latestErr
	}
	key := r.PathValue("key")
	if len(info.keys) > 1 {
		// A composite key in a path is its entity key string, the JSON
		// array of its values in key order.
		if _, err := keys.SplitEntityKey(key, len(info.keys)); err != nil {
			return nil, nil, badRequest("bad_key", "entity %s has a composite key: put the JSON array of its %s values in the path, e.g. /v1/features/%s/%s (URL-encoded), or POST /v1/lookup with an object key",
				info.name, strings.Join(info.keys, ", "), info.name, keys.EntityKey(info.keys))
		}
	}
	a, err := s.lookup(info, []string{key}, info.latestNames)
	return nil, a, err
}

// value is one feature's value as of the lookup time, without the pointers
// of FeatureValue (no allocation per value).
type value struct {
	typ  aggregations.ValueType // the feature's output type (config.Feature.OutputType)
	v    float64
	list []float64  // the value of a list feature (first_k, last_k), with hasV
	str  string     // the value of a string feature (typ TypeString), with hasV
	strs []string   // the value of a string list feature, with hasV
	top  []TopValue // the value of a top_k feature, with hasV
	// topErr is its error (aggregations.TopKError: 0 while exact).
	topErr int64
	// buckets is the value of a bucketed feature, with hasV (non-nil,
	// possibly empty, exactly then), by increasing key.
	buckets []bucketEntry
	hasV    bool
	status  string
	version int
	updated int64 // ms; 0: none
}

func (v *value) public() FeatureValue {
	fv := FeatureValue{Status: v.status, Version: v.version, Type: v.typ}
	switch {
	case v.hasV && v.top != nil:
		fv.Top = v.top
	case v.hasV && v.buckets != nil:
		fv.Buckets = publicBuckets(v.buckets)
	case v.hasV && v.strs != nil:
		fv.Strs = v.strs
	case v.hasV && v.typ == aggregations.TypeString:
		x := v.str
		fv.Str = &x
	case v.hasV && v.list != nil:
		fv.List = v.list
	case v.hasV:
		x := v.v
		fv.Value = &x
	}
	if v.updated > 0 {
		u := time.UnixMilli(v.updated).UTC()
		fv.UpdatedAt = &u
	}
	return fv
}

// lookupAnswer is the result of lookup: vals[i*len(feats)+j] is feature j
// (requested as names[j]) of keys[i], as of asOf. It is pooled: the endpoint
// releases it after writing and logging it.
type lookupAnswer struct {
	info     *entityInfo
	asOf     time.Time
	keys     []string
	names    []string
	feats    []pickedFeature
	warnings []string
	vals     []value
	order    []int  // indexes of names in JSON order (sorted, duplicates dropped)
	consumer string // who asked (see consumerName), for the counters and the lookup log
	service  string // the feature service the request named, or ""
	request  uint64 // the request's sequence number on this replica, for the lookup log
	// reqKeys and reqFeatures are the decoder's reusable slices (keys and
	// names may alias them until release).
	reqKeys, reqFeatures []string
}

var answerPool = sync.Pool{New: func() any { return new(lookupAnswer) }}

// release returns a to answerPool, keeping its slices' capacity.
func (a *lookupAnswer) release() {
	*a = lookupAnswer{feats: a.feats[:0], warnings: a.warnings[:0], vals: a.vals[:0], order: a.order[:0],
		reqKeys: reuse(a.reqKeys), reqFeatures: reuse(a.reqFeatures)}
	answerPool.Put(a)
}

// reuse empties a pooled slice of strings, dropping its references (the
// request's text) and slices grown past 1024 entries.
func reuse(xs []string) []string {
	if cap(xs) > 1024 {
		return nil
	}
	clear(xs[:cap(xs)])
	return xs[:0]
}

// response converts a to the exported LookupResponse.
func (a *lookupAnswer) response() *LookupResponse {
	resp := &LookupResponse{AsOf: a.asOf, Results: make([]KeyResult, len(a.keys)), Warnings: a.warnings}
	n := len(a.feats)
	for i, key := range a.keys {
		kr := KeyResult{Key: key, Features: make(map[string]FeatureValue, n)}
		for j := range a.feats {
			kr.Features[a.names[j]] = a.vals[i*n+j].public()
		}
		resp.Results[i] = kr
	}
	return resp
}

// answer computes every (key, feature of a.feats) value as of now into a:
// from the answer cache when the entity's cached view holds every one of
// them valid as of now (see answercache.go), else by folding the view,
// whose answers it then caches. Once the pools and the cache are warm, it
// allocates nothing on a hit (TestAnswerPathDoesNotAllocate).
func (s *Service) answer(a *lookupAnswer, info *entityInfo, keyList, names []string) error {
	now := s.o.Now()
	T := now.UnixMilli()
	a.info, a.asOf, a.keys, a.names = info, now.UTC(), keyList, names
	v := lookupViewPool.Get().(*lookupView)
	defer lookupViewPool.Put(v)
	for _, key := range keyList {
		v.kbuf = keys.View(v.kbuf[:0], info.name, key)
		ent, found, gen := s.cache.entry(v.kbuf)
		if found && !s.o.NoAnswerCache && a.fromAnswerCache(ent.ans, T) {
			s.answerHits.Inc()
			continue
		}
		ent, cached, err := s.parseView(info.name, key, v, ent, found, gen)
		if err != nil {
			return err
		}
		known, err := knownAt(v, T)
		if err != nil {
			return fmt.Errorf("view of %s %q: %w", info.name, key, err)
		}
		start := len(a.vals)
		for _, f := range a.feats {
			// Folded as if not warming up, the value the answer cache
			// keeps; fold then only replaces the status (see fold).
			fv, err := fold(pickedFeature{f.featureInfo, false}, v, T, known)
			if err != nil {
				return fmt.Errorf("view of %s %q: %w", info.name, key, err)
			}
			a.vals = append(a.vals, fv)
		}
		if cached && !s.o.NoAnswerCache {
			s.answerMisses.Inc()
			ans, err := newAnswers(ent.ans, a.feats, a.vals[start:], v, T, known)
			if err != nil {
				return fmt.Errorf("view of %s %q: %w", info.name, key, err)
			}
			if ans != nil {
				s.cache.setAnswers(v.kbuf, ent.val, ans)
			}
		}
		for j, f := range a.feats {
			if f.warming {
				a.vals[start+j].status = StatusWarmingUp
			}
		}
	}
	a.sortNames()
	return nil
}

// sortNames fills order: the names in the order encoding/json writes map
// keys (sorted), each once (the last occurrence, as a map assignment keeps).
func (a *lookupAnswer) sortNames() {
	for j := range a.names {
		a.order = append(a.order, j)
	}
	slices.SortStableFunc(a.order, func(x, y int) int { return strings.Compare(a.names[x], a.names[y]) })
	out := a.order[:0]
	for k, j := range a.order {
		if k+1 < len(a.order) && a.names[a.order[k+1]] == a.names[j] {
			continue
		}
		out = append(out, j)
	}
	a.order = out
}

// fold computes one feature of one entity as of T; known is knownAt(v, T).
// The status contract (DESIGN.md "Statuses"), the same for every read path:
//   - NOT_FOUND: the entity is unknown as of T (no event with ts < T in
//     any of its sources): the value is null, whatever the aggregation or
//     its default.
//   - EMPTY_WINDOW: known, but no event of this feature in the window
//     (none ever, or its tiles expired): count and sum are a real 0, the
//     others null or the feature's default.
//   - PRESENT: at least one event in the window.
//   - EXPIRED: the feature has a ttl and the newest event in its window is
//     older than it (config.Feature.Expired): the empty-window value.
//   - WARMING_UP: the version is still bootstrapping (the value is partial;
//     null for an unknown entity). A derived feature is warming up while
//     any input is.
//
// A derived feature (see foldDef) is NOT_FOUND, WARMING_UP, or PRESENT
// with its value or null.
func fold(f pickedFeature, v *lookupView, T int64, known bool) (value, error) {
	fv := value{version: f.def.Version, status: StatusNotFound, typ: f.def.OutputType()}
	if f.warming {
		fv.status = StatusWarmingUp
	}
	if !known {
		return fv, nil
	}
	if f.def.Bucket != "" {
		return foldBuckets(fv, f, v, T)
	}
	if f.def.Derived == nil && f.def.Aggregation == aggregations.TopK {
		return foldTop(fv, f, v, T)
	}
	if f.def.Derived == nil && (f.def.Aggregation.List() || fv.typ == aggregations.TypeString) {
		return foldList(fv, f, v, T)
	}
	x, ok, status, updated, err := foldDef(f.def, v, T, 0)
	if err != nil {
		return fv, err
	}
	fv.updated = updated
	if !f.warming {
		fv.status = status
	}
	fv.v, fv.hasV = x, ok
	return fv, nil
}
