package lookup

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
)

// FeastRequest is the body of Feast's POST /get-online-features. Entities
// maps the entity's join key (its key field in the feature file, e.g.
// user_id) to the keys to look up. Feature names may be "view:name" as Feast
// writes them; the view part is ignored.
type FeastRequest struct {
	Features         []string         `json:"features"`
	Entities         map[string][]any `json:"entities"`
	FullFeatureNames bool             `json:"full_feature_names"`
	FeatureService   string           `json:"feature_service,omitempty"`
	RequestContext   map[string][]any `json:"request_context,omitempty"`
}

// FeastResponse mirrors Feast's column-oriented answer: results[i] is the
// column of metadata.feature_names[i], the join key first.
type FeastResponse struct {
	Metadata struct {
		FeatureNames []string `json:"feature_names"`
	} `json:"metadata"`
	Results []FeastColumn `json:"results"`
}

// FeastColumn is one column: a value, status and event timestamp per row.
type FeastColumn struct {
	Values          []any    `json:"values"`
	Statuses        []string `json:"statuses"`
	EventTimestamps []string `json:"event_timestamps"`
}

// Feast statuses.
const (
	feastPresent  = "PRESENT"
	feastNotFound = "NOT_FOUND"
	feastNull     = "NULL_VALUE"
)

func (s *Service) handleFeast(r *http.Request) (any, error) {
	var req FeastRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.FeatureService != "" {
		return nil, badRequest("unsupported", "feature_service is not supported; list \"features\" instead")
	}
	if len(req.Entities) != 1 {
		return nil, badRequest("bad_entities", `"entities" must map exactly one join key (e.g. "user_id") to a list of keys`)
	}
	var joinKey string
	var raw []any
	for k, v := range req.Entities {
		joinKey, raw = k, v
	}
	info, ok := s.byKey[joinKey]
	if !ok {
		var known []string
		for k := range s.byKey {
			known = append(known, k)
		}
		return nil, badRequest("unknown_entity", "no entity has join key %q; join keys: %s", joinKey, strings.Join(known, ", "))
	}
	keys := make([]string, len(raw))
	for i, v := range raw {
		switch k := v.(type) {
		case string:
			keys[i] = k
		case float64:
			if k != float64(int64(k)) {
				return nil, badRequest("bad_entities", "entities.%s[%d]: %v is not an integer key", joinKey, i, k)
			}
			keys[i] = strconv.FormatInt(int64(k), 10)
		default:
			return nil, badRequest("bad_entities", "entities.%s[%d]: keys must be strings or integers", joinKey, i)
		}
	}
	if err := s.checkKeys(keys); err != nil {
		return nil, err
	}
	refs := make([]string, len(req.Features))
	for i, f := range req.Features {
		if j := strings.LastIndexByte(f, ':'); j >= 0 {
			f = f[j+1:]
		}
		refs[i] = f
	}
	feats, _, err := s.resolve(info, refs)
	if err != nil {
		return nil, err
	}
	ans, err := s.answer(info, keys, refs, feats, nil)
	if err != nil {
		return nil, err
	}
	return &feastAnswer{answer: ans, resp: feastShape(joinKey, req.Features, req.FullFeatureNames, refs, feats, keys, ans.response())}, nil
}

// feastAnswer is what handleFeast returns: the response to write and the
// answer behind it (for the lookup log).
type feastAnswer struct {
	answer *lookupAnswer
	resp   *FeastResponse
}

func feastShape(joinKey string, requested []string, full bool, refs []string, feats []*config.Feature, keys []string, ans *LookupResponse) *FeastResponse {
	out := &FeastResponse{}
	out.Metadata.FeatureNames = append(out.Metadata.FeatureNames, joinKey)
	zero := time.Unix(0, 0).UTC().Format(time.RFC3339)
	keyCol := FeastColumn{}
	for _, k := range keys {
		keyCol.Values = append(keyCol.Values, k)
		keyCol.Statuses = append(keyCol.Statuses, feastPresent)
		keyCol.EventTimestamps = append(keyCol.EventTimestamps, zero)
	}
	out.Results = append(out.Results, keyCol)
	for j := range feats {
		name := refs[j]
		if full {
			name = strings.ReplaceAll(requested[j], ":", "__")
		}
		out.Metadata.FeatureNames = append(out.Metadata.FeatureNames, name)
		col := FeastColumn{}
		for i := range keys {
			fv := ans.Results[i].Features[refs[j]]
			status := feastPresent
			switch {
			case fv.Status == StatusNotFound:
				status = feastNotFound
			case fv.Value == nil:
				status = feastNull
			}
			var v any
			if fv.Value != nil {
				v = *fv.Value
			}
			ts := zero
			if fv.UpdatedAt != nil {
				ts = fv.UpdatedAt.Format(time.RFC3339Nano)
			}
			col.Values = append(col.Values, v)
			col.Statuses = append(col.Statuses, status)
			col.EventTimestamps = append(col.EventTimestamps, ts)
		}
		out.Results = append(out.Results, col)
	}
	return out
}
