package lookup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/metrics"
)

// Feature value statuses in lookup responses.
const (
	StatusPresent     = "PRESENT"      // at least one event in the window
	StatusEmptyWindow = "EMPTY_WINDOW" // the entity is known but no event is in the window
	StatusNotFound    = "NOT_FOUND"    // no event of this entity was ever seen for this feature
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
			writeError(w, &apiError{http.StatusServiceUnavailable, "not_ready", "catching up with the feature log"})
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

// endpoint is the one response path: it checks readiness, bounds the body,
// times the handler, and writes either its result or its error as JSON.
func (s *Service) endpoint(route string, h func(*http.Request) (any, error)) http.Handler {
	hist := s.m.Latency.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		var code int
		if !s.Ready() {
			code = writeError(w, &apiError{http.StatusServiceUnavailable, "not_ready", "the lookup view is still catching up with the feature log; retry shortly"})
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, s.o.MaxBodyBytes)
			res, err := h(r)
			if err != nil {
				code = writeError(w, err)
			} else {
				code = writeJSON(w, http.StatusOK, res)
			}
		}
		hist.Observe(time.Since(t0).Seconds())
		s.m.Requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) int {
	w.Header().Set("Content-Type", "application/json")
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

// decodeBody decodes exactly one JSON object into v, rejecting unknown
// fields, trailing data and oversized bodies with a 4xx. The Content-Type is
// not checked, so a plain `curl -d '{...}'` works.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
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

// LookupRequest is the body of POST /v1/lookup.
type LookupRequest struct {
	Entity   string   `json:"entity"`
	Keys     []string `json:"keys"`
	Features []string `json:"features"` // "name" (newest ready version) or "name@version"
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
type FeatureValue struct {
	Value     *float64   `json:"value"`
	Status    string     `json:"status"`
	Version   int        `json:"version"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
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

// resolve maps requested feature references to definitions of the entity.
func (s *Service) resolve(info *entityInfo, refs []string) ([]*config.Feature, []string, error) {
	if len(refs) == 0 {
		return nil, nil, badRequest("missing_features", `"features" must name at least one feature of entity %s`, info.name)
	}
	out := make([]*config.Feature, len(refs))
	var warnings []string
	for i, ref := range refs {
		f, err := s.o.Config.Feature(ref)
		if err != nil {
			return nil, nil, &apiError{http.StatusNotFound, "unknown_feature", err.Error()}
		}
		if f.Entity != info.name {
			return nil, nil, badRequest("wrong_entity", "feature %s belongs to entity %s, not %s", f.ID, f.Entity, info.name)
		}
		if f.Deprecated {
			warnings = append(warnings, fmt.Sprintf("feature %s is deprecated", f.ID))
		}
		out[i] = f
	}
	return out, warnings, nil
}

func (s *Service) checkKeys(keys []string) error {
	if len(keys) == 0 {
		return badRequest("missing_keys", `"keys" must list at least one entity key`)
	}
	if len(keys) > s.o.MaxKeys {
		return badRequest("too_many_keys", "%d keys in one request; the limit is %d", len(keys), s.o.MaxKeys)
	}
	return nil
}

func (s *Service) handleLookup(r *http.Request) (any, error) {
	var req LookupRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	info, err := s.entity(req.Entity)
	if err != nil {
		return nil, err
	}
	if err := s.checkKeys(req.Keys); err != nil {
		return nil, err
	}
	feats, warnings, err := s.resolve(info, req.Features)
	if err != nil {
		return nil, err
	}
	return s.answer(info, req.Keys, req.Features, feats, warnings)
}

func (s *Service) handleEntity(r *http.Request) (any, error) {
	info, err := s.entity(r.PathValue("entity"))
	if err != nil {
		return nil, err
	}
	key := r.PathValue("key")
	var names []string
	var feats []*config.Feature
	seen := map[string]bool{}
	for _, f := range info.features {
		if seen[f.Name] {
			continue
		}
		seen[f.Name] = true
		def, err := s.o.Config.Feature(f.Name)
		if err != nil {
			return nil, err
		}
		names = append(names, f.Name)
		feats = append(feats, def)
	}
	return s.answer(info, []string{key}, names, feats, nil)
}

// answer computes every (key, feature) value as of now.
func (s *Service) answer(info *entityInfo, keys, names []string, feats []*config.Feature, warnings []string) (*LookupResponse, error) {
	now := s.o.Now()
	T := now.UnixMilli()
	resp := &LookupResponse{AsOf: now.UTC(), Results: make([]KeyResult, len(keys)), Warnings: warnings}
	e := viewPool.Get().(*entityView)
	defer viewPool.Put(e)
	var kbuf, vbuf [256]byte
	for i, key := range keys {
		found, err := s.load(info.name, key, e, kbuf[:0], vbuf[:0])
		if err != nil {
			return nil, err
		}
		kr := KeyResult{Key: key, Features: make(map[string]FeatureValue, len(feats))}
		for j, f := range feats {
			kr.Features[names[j]] = s.value(f, e, found, T)
		}
		resp.Results[i] = kr
	}
	for _, f := range feats {
		s.m.FeatureLookups.WithLabelValues(f.ID).Add(float64(len(keys)))
	}
	return resp, nil
}

// value folds one feature of one entity as of T.
func (s *Service) value(f *config.Feature, e *entityView, found bool, T int64) FeatureValue {
	fv := FeatureValue{Version: f.Version, Status: StatusNotFound}
	var ir aggregations.IR
	if i := e.index(f.ID); found && i >= 0 {
		ir = e.series[i].Read(f.Window, T)
		fv.Status = StatusEmptyWindow
		if !ir.Empty() {
			fv.Status = StatusPresent
		}
		if e.updated[i] > 0 {
			u := time.UnixMilli(e.updated[i]).UTC()
			fv.UpdatedAt = &u
		}
	}
	if v, ok := aggregations.Finalize(f.Aggregation, ir); ok {
		fv.Value = &v
	} else if f.Default != nil {
		d := *f.Default
		fv.Value = &d
	}
	return fv
}
