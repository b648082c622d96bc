package lookup

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// entityKey is keys.EntityKey (the variable keys shadows the package below).
var entityKey = keys.EntityKey

// FeastRequest is the body of Feast's POST /get-online-features. Fields it
// does not list (the SDK always sends include_feature_view_version_metadata)
// are ignored, as Feast's server does. Entities
// maps the entity's join key (its key field in the feature file, e.g.
// user_id), or each join key of a composite entity (user_id and
// merchant_id: columns of equal length), to the keys to look up. Feature names may be "view:name" as Feast
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
	// feastOutsideMaxAge is Feast's status of a value older than its
	// feature view's ttl: featurepipe's EXPIRED without a value.
	feastOutsideMaxAge = "OUTSIDE_MAX_AGE"
)

func (s *Service) handleFeast(r *http.Request) (any, *lookupAnswer, error) {
	var req FeastRequest
	if err := decodeBody(r.Body, &req, false); err != nil {
		return nil, nil, err
	}
	if len(req.Entities) == 0 {
		return nil, nil, badRequest("bad_entities", `"entities" must map exactly one join key (e.g. "user_id"), or each join key of a composite entity, to a list of keys`)
	}
	joinKeys := make([]string, 0, len(req.Entities))
	for k := range req.Entities {
		joinKeys = append(joinKeys, k)
	}
	info, ok := s.byKey[joinKeySet(joinKeys)]
	if !ok {
		var known []string
		for _, e := range s.o.Config.Entities {
			known = append(known, e.KeyList())
		}
		sort.Strings(joinKeys)
		if len(joinKeys) == 1 {
			return nil, nil, badRequest("unknown_entity", "no entity has join key %q; join keys: %s", joinKeys[0], strings.Join(known, ", "))
		}
		return nil, nil, badRequest("unknown_entity", "no entity has join keys %s; join keys: %s", strings.Join(joinKeys, ", "), strings.Join(known, ", "))
	}
	joinKeys = info.keys // the entity's order: its columns come first, in it
	n := len(req.Entities[joinKeys[0]])
	for _, k := range joinKeys[1:] {
		if len(req.Entities[k]) != n {
			return nil, nil, badRequest("bad_entities", "entities.%s has %d keys and entities.%s %d; the join keys of one entity are columns of one table, of the same length", joinKeys[0], n, k, len(req.Entities[k]))
		}
	}
	keyCols := make([][]string, len(joinKeys))
	for c, k := range joinKeys {
		keyCols[c] = make([]string, n)
		for i, v := range req.Entities[k] {
			t, err := keyValue(v)
			if err != nil {
				if _, num := v.(float64); !num {
					err = errors.New("keys must be strings or integers")
				}
				return nil, nil, badRequest("bad_entities", "entities.%s[%d]: %v", k, i, err)
			}
			keyCols[c][i] = t
		}
	}
	if err := s.checkKeys(n); err != nil {
		return nil, nil, err
	}
	keys := make([]string, n)
	vals := make([]string, len(joinKeys))
	for i := range keys {
		for c := range joinKeys {
			vals[c] = keyCols[c][i]
		}
		keys[i] = entityKey(vals)
	}
	refs := make([]string, len(req.Features))
	for i, f := range req.Features {
		if j := strings.LastIndexByte(f, ':'); j >= 0 {
			f = f[j+1:]
		}
		refs[i] = f
	}
	requested, names := req.Features, refs
	if req.FeatureService != "" { // Feast's FeatureService: its name replaces "features"
		svcRefs, err := s.requestedFeatures(info, req.FeatureService, refs)
		if err != nil {
			return nil, nil, err
		}
		refs = svcRefs
		requested, names = s.feastServiceNames(svcRefs)
	}
	ans, err := s.lookup(info, keys, refs)
	if err != nil {
		return nil, nil, err
	}
	ans.service = req.FeatureService
	return feastShape(joinKeys, keyCols, requested, req.FullFeatureNames, names, ans), ans, nil
}

// feastServiceNames names a feature service's columns as Feast names the
// features of the FeatureService featurepipe feast-repo generates for it:
// a reference that is a bare name, or pins the version a bare name reads in
// the feature file, is the field of its source's feature view, so its
// column is the feature's name (view__name with full_feature_names), as
// Feast's own server and the offline store answer. Any other reference
// (a service feast-repo does not generate) keeps its name as listed,
// name@version, so that its columns stay distinct. requested[j] is the
// view:name (or the reference) full names derive from.
func (s *Service) feastServiceNames(svcRefs []string) (requested, names []string) {
	requested, names = make([]string, len(svcRefs)), make([]string, len(svcRefs))
	for j, ref := range svcRefs {
		requested[j], names[j] = ref, ref
		ft, err := s.o.Config.Feature(ref)
		if err != nil {
			continue // validated at load; the lookup reports it
		}
		if def, err := s.o.Config.Feature(ft.Name); err == nil && def.ID == ft.ID {
			// The view feast-repo generates (feastrepo.ViewName): the
			// source's, or <source>_<entity> for a re-keyed feature.
			view := ft.Source
			if ft.Repartition != nil {
				view += "_" + ft.Entity
			}
			requested[j], names[j] = view+":"+ft.Name, ft.Name
		}
	}
	return requested, names
}

// feastShape writes the answer a (for the features named names,
// requested as requested) in Feast's column-oriented shape.
func feastShape(joinKeys []string, keyCols [][]string, requested []string, full bool, names []string, a *lookupAnswer) *FeastResponse {
	out := &FeastResponse{}
	zero := time.Unix(0, 0).UTC().Format(time.RFC3339)
	for c, jk := range joinKeys {
		out.Metadata.FeatureNames = append(out.Metadata.FeatureNames, jk)
		keyCol := FeastColumn{}
		for _, k := range keyCols[c] {
			keyCol.Values = append(keyCol.Values, k)
			keyCol.Statuses = append(keyCol.Statuses, feastPresent)
			keyCol.EventTimestamps = append(keyCol.EventTimestamps, zero)
		}
		out.Results = append(out.Results, keyCol)
	}
	n := len(a.feats)
	for j := range a.feats {
		name := names[j]
		if full {
			name = strings.ReplaceAll(requested[j], ":", "__")
		}
		out.Metadata.FeatureNames = append(out.Metadata.FeatureNames, name)
		col := FeastColumn{}
		for i := range a.keys {
			fv := &a.vals[i*n+j]
			status, v := feastCell(fv)
			ts := zero
			if fv.updated > 0 {
				ts = time.UnixMilli(fv.updated).UTC().Format(time.RFC3339Nano)
			}
			col.Values = append(col.Values, v)
			col.Statuses = append(col.Statuses, status)
			col.EventTimestamps = append(col.EventTimestamps, ts)
		}
		out.Results = append(out.Results, col)
	}
	return out
}

// feastCell maps a value to Feast's status and value, as Feast's own
// server answers (the status contract in fold, in Feast's words):
//   - NOT_FOUND (unknown entity): NOT_FOUND, null, even for count and sum;
//   - a value (PRESENT, or EMPTY_WINDOW's real 0 of count and sum, or a
//     default): PRESENT with it, since SDKs up to 0.63 turn every other
//     status into None;
//   - no value (avg, min, max, last of an empty window): NULL_VALUE, null;
//   - EXPIRED without a value: OUTSIDE_MAX_AGE (Feast's status of a value
//     older than its view's ttl), null; with one (count, sum, a default),
//     PRESENT like an empty window's;
//   - a bucketed feature's empty map (the empty window of count, sum,
//     approx_distinct; GET and POST /v1/lookup answer {}): NULL_VALUE,
//     null. The Feast SDK's remote online store (0.64+) infers each value's
//     type from its JSON and fails the whole get_online_features call on an
//     empty object ("Couldn't infer value type from empty value", also
//     against Feast's own server), so an empty map cannot be answered as
//     one. A non-empty map is a JSON object whose values are written as
//     feastCell writes unbucketed ones, doubles as floats, a bucketed
//     top_k's as its list of {value, count} objects (feastBuckets).
func feastCell(fv *value) (status string, v any) {
	switch {
	case fv.status == StatusNotFound:
		return feastNotFound, nil
	case !fv.hasV && fv.status == StatusExpired:
		return feastOutsideMaxAge, nil
	case !fv.hasV:
		return feastNull, nil
	case fv.top != nil: // top_k: String, the JSON text of the list
		return feastPresent, TopJSON(fv.top, fv.typ)
	case fv.buckets != nil && len(fv.buckets) == 0: // an empty map: see feastCell's doc
		return feastNull, nil
	case fv.buckets != nil: // Map (Feast's MAP: string keys, values as in JSON)
		return feastPresent, feastBuckets(fv.buckets)
	case fv.strs != nil: // Array(String): STRING_LIST
		return feastPresent, fv.strs
	case fv.typ == aggregations.TypeString: // String
		return feastPresent, fv.str
	case fv.list != nil && fv.typ == aggregations.TypeLong: // Array(Int64): INT64_LIST
		return feastPresent, longsOf(fv.list)
	case fv.list != nil && fv.typ == aggregations.TypeBool: // Array(Bool): BOOL_LIST
		return feastPresent, boolsOf(fv.list)
	case fv.list != nil: // a list feature: a JSON array, as Feast's DOUBLE_LIST
		return feastPresent, feastDoubles(fv.list)
	case fv.typ == aggregations.TypeLong: // Int64
		return feastPresent, int64(fv.v)
	case fv.typ == aggregations.TypeBool: // Bool
		return feastPresent, fv.v != 0
	}
	return feastPresent, fv.v
}

// feastBuckets is a non-empty bucketed value in Feast's answer: a JSON
// object from bucket key to each bucket's value as feastCell writes an
// unbucketed one (null for a bucket without a value), except that a double
// is written as a float (12.0, not 12): the SDK infers each entry's type
// from its JSON, and an integral sum would otherwise come back as an int
// beside float entries, where Feast's own server writes 12.0. Cost: one
// map and one boxed value per bucket.
func feastBuckets(bs []bucketEntry) map[string]any {
	out := make(map[string]any, len(bs))
	for i := range bs {
		if e := &bs[i].val; e.hasV && e.top != nil { // a bucketed top_k: see feastTops
			out[bs[i].key] = feastTops(e.top, e.typ)
			continue
		}
		_, v := feastCell(&bs[i].val)
		if x, ok := v.(float64); ok {
			v = feastDouble(x)
		}
		out[bs[i].key] = v
	}
	return out
}

// feastTops is one bucket of a bucketed top_k in Feast's answer: the list
// of {"value": v, "count": n} objects itself (not its JSON text, as an
// unbucketed top_k's String is), v a string, long, boolean or a double
// written as a float. The Feast SDK (0.63 and 0.67, the versions
// TestFeastSDK runs) reads a list of objects inside a Map as a MAP_LIST
// and gives the bucket back as a list of dicts, as the Flight server's
// map<utf8, list<struct<value, count>>> reads offline.
func feastTops(l []TopValue, t aggregations.ValueType) []map[string]any {
	out := make([]map[string]any, len(l))
	for i, x := range l {
		var v any
		switch t {
		case aggregations.TypeString:
			v = x.Str
		case aggregations.TypeLong:
			v = int64(x.Value)
		case aggregations.TypeBool:
			v = x.Value != 0
		default:
			v = feastDouble(x.Value)
		}
		out[i] = map[string]any{"value": v, "count": x.Count}
	}
	return out
}

// feastDouble is a double written as feastDoubles writes each element:
// always with a decimal point or exponent (12.0).
type feastDouble float64

// MarshalJSON writes d as one element of feastDoubles.
func (d feastDouble) MarshalJSON() ([]byte, error) {
	b, err := feastDoubles{float64(d)}.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return b[1 : len(b)-1], nil
}

// longsOf is l, whole numbers within ±2^53 (a long feature's), as longs.
func longsOf(l []float64) []int64 {
	out := make([]int64, len(l))
	for i, x := range l {
		out[i] = int64(x)
	}
	return out
}

// feastDoubles is a list feature's value in Feast's answer: a JSON array
// whose every element is written as a float (3.0, not 3). The Feast SDK's
// remote online store converts the array with the field's DOUBLE_LIST type
// (Array(Float64)), which refuses Python ints ("Value "3" is of type int"),
// and infers DOUBLE_LIST from the first element where it has no type (a
// feature service's answer in SDK 0.64+): an integral double written as 3
// would fail or turn the list into INT64_LIST. Values are never NaN or
// infinite (JSON has neither; the list holds Avro doubles as read).
type feastDoubles []float64

// MarshalJSON writes each element as encoding/json does (the shortest form
// that reads back the same double), with ".0" after an integral mantissa. Cost: O(len) with one
// allocation for the result.
func (l feastDoubles) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(l)*8)
	b = append(b, '[')
	for i, x := range l {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("list element %v: JSON has no NaN or infinity", x)
		}
		if i > 0 {
			b = append(b, ',')
		}
		start := len(b)
		format := byte('f') // as encoding/json: exponents only far from 1
		if a := math.Abs(x); a != 0 && (a < 1e-6 || a >= 1e21) {
			format = 'e'
		}
		b = strconv.AppendFloat(b, x, format, -1, 64)
		if !bytes.ContainsAny(b[start:], ".e") {
			b = append(b, ".0"...)
		}
	}
	return append(b, ']'), nil
}
