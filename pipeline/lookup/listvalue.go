package lookup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/jsonenc"
)

// foldList is fold for a list feature (first_k, last_k) and for a string
// feature (output type TypeString: last, first, first_k, last_k of a string
// field): its value is the list aggregations.FinalizeList gives, or the
// string or strings FinalizeString and FinalizeStringList give (null for an
// empty window or an expired one: these take no default), with fold's
// statuses. It allocates the list.
func foldList(fv value, f pickedFeature, v *lookupView, T int64) (value, error) {
	ir, status, updated, err := foldIR(f.def, v, T)
	if err != nil {
		return fv, err
	}
	fv.updated = updated
	if !f.warming {
		fv.status = status
	}
	finalizeInto(&fv, f.def.Aggregation, f.def.Window, ir)
	return fv, nil
}

// appendStrings appends l as a JSON array of strings, as encoding/json
// writes a []string.
func appendStrings(b []byte, l []string) []byte {
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, s)
	}
	return append(b, ']')
}

// appendList appends l as a JSON array of numbers, as encoding/json writes
// a []float64, or of booleans (x != 0) for t TypeBool, as it writes a
// []bool.
func appendList(b []byte, l []float64, t aggregations.ValueType) []byte {
	b = append(b, '[')
	for i, x := range l {
		if i > 0 {
			b = append(b, ',')
		}
		if t == aggregations.TypeBool {
			b = strconv.AppendBool(b, x != 0)
			continue
		}
		b = jsonenc.AppendFloat(b, x)
	}
	return append(b, ']')
}

// boolsOf is l, 0/1 values, as booleans.
func boolsOf(l []float64) []bool {
	out := make([]bool, len(l))
	for i, x := range l {
		out[i] = x != 0
	}
	return out
}

// featureValueJSON is FeatureValue's JSON form: value is a number, an
// array of numbers (a list feature), an object (a bucketed feature) or null.
type featureValueJSON struct {
	Value     any        `json:"value"`
	Status    string     `json:"status"`
	Version   int        `json:"version"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

// MarshalJSON writes fv with "value" a number (Value), an array (List) or
// null, then status, version and updated_at (when set).
func (fv FeatureValue) MarshalJSON() ([]byte, error) {
	w := featureValueJSON{Value: fv.jsonValue(), Status: fv.Status, Version: fv.Version, UpdatedAt: fv.UpdatedAt}
	return json.Marshal(w)
}

// jsonValue is what MarshalJSON writes under "value".
func (fv *FeatureValue) jsonValue() any {
	switch {
	case fv.Top != nil:
		return json.RawMessage(appendTop(nil, fv.Top, fv.Type))
	case fv.Buckets != nil:
		return bucketsJSON(fv.Buckets)
	case fv.Strs != nil:
		return fv.Strs
	case fv.Str != nil:
		return *fv.Str
	case fv.List != nil && fv.Type == aggregations.TypeBool:
		return boolsOf(fv.List)
	case fv.List != nil:
		return fv.List
	case fv.Value != nil && fv.Type == aggregations.TypeBool:
		return *fv.Value != 0
	case fv.Value != nil:
		return *fv.Value
	}
	return nil
}

// UnmarshalJSON reads what MarshalJSON writes: an array "value" into List,
// a number into Value; booleans (a value or the elements of a list) as 1 or
// 0 with Type TypeBool (a whole number stays TypeDouble: JSON does not tell
// a long from a double).
func (fv *FeatureValue) UnmarshalJSON(b []byte) error {
	var w struct {
		Value     json.RawMessage `json:"value"`
		Status    string          `json:"status"`
		Version   int             `json:"version"`
		UpdatedAt *time.Time      `json:"updated_at"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*fv = FeatureValue{Status: w.Status, Version: w.Version, UpdatedAt: w.UpdatedAt}
	switch raw := bytes.TrimSpace(w.Value); {
	case len(raw) == 0 || string(raw) == "null":
	case raw[0] == '{':
		return fv.unmarshalBuckets(raw)
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("feature value: %w", err)
		}
		fv.Str, fv.Type = &s, aggregations.TypeString
	case raw[0] == '[' && isTopJSON(raw): // a top_k value
		top, typ, err := parseTop(raw)
		if err != nil {
			return fmt.Errorf("feature value: %w", err)
		}
		fv.Top, fv.Type = top, typ
	case raw[0] == '[':
		if err := json.Unmarshal(raw, &fv.List); err != nil {
			var ss []string // a list of strings
			if json.Unmarshal(raw, &ss) == nil {
				fv.List, fv.Strs, fv.Type = nil, ss, aggregations.TypeString
				break
			}
			var bs []bool // a list of booleans
			if json.Unmarshal(raw, &bs) != nil {
				return fmt.Errorf("feature value list: %w", err)
			}
			fv.List, fv.Type = make([]float64, len(bs)), aggregations.TypeBool
			for i, b := range bs {
				if b {
					fv.List[i] = 1
				}
			}
		}
		if fv.List == nil {
			fv.List = []float64{}
		}
	case string(raw) == "true" || string(raw) == "false":
		x := 0.0
		if raw[0] == 't' {
			x = 1
		}
		fv.Value, fv.Type = &x, aggregations.TypeBool
	default:
		var x float64
		if err := json.Unmarshal(raw, &x); err != nil {
			return fmt.Errorf("feature value: %w", err)
		}
		fv.Value = &x
	}
	return nil
}
