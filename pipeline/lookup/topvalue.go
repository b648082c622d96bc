package lookup

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/jsonenc"
)

// TopValue is one entry of a top_k feature's value: a value of the
// feature's field and how often it occurs in the window (exact while the
// window has at most aggregations.TopKExactMax distinct values, otherwise
// at most aggregations.TopKError below the true count). Value is the value
// of a number field (FeatureValue.Type tells a long or a boolean, 0 or 1,
// from a double); Str that of a string field (Type TypeString).
type TopValue = aggregations.TopValue

// foldTop is fold for a top_k feature: its value is the list
// aggregations.FinalizeTopK (FinalizeStringTopK for a string field) gives,
// most frequent first, null for an empty or expired window (no default),
// with fold's statuses. It allocates the list.
func foldTop(fv value, f pickedFeature, v *lookupView, T int64) (value, error) {
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

// appendTop appends l as a JSON array of {"value": v, "count": n} objects
// (jsonenc.AppendTopValues).
func appendTop(b []byte, l []TopValue, t aggregations.ValueType) []byte {
	return jsonenc.AppendTopValues(b, l, t)
}

// TopJSON is the JSON text of a top_k value, as the lookup API writes it
// (`[{"value":"atm","count":3},...]`): what Feast's String column of a
// top_k feature holds.
func TopJSON(l []TopValue, t aggregations.ValueType) string {
	return string(appendTop(nil, l, t))
}

// isTopJSON reports whether raw, a JSON array, is a top_k value: an array
// whose first element is an object.
func isTopJSON(raw []byte) bool {
	rest := bytes.TrimSpace(raw[1:])
	return len(rest) > 0 && rest[0] == '{'
}

// parseTop reads a top_k value written by appendTop: the value of each
// entry a string (Type TypeString), a boolean (TypeBool) or a number.
func parseTop(raw []byte) ([]TopValue, aggregations.ValueType, error) {
	var entries []struct {
		Value json.RawMessage `json:"value"`
		Count int64           `json:"count"`
	}
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, 0, fmt.Errorf("top_k value: %w", err)
	}
	out := make([]TopValue, len(entries))
	typ := aggregations.TypeDouble
	for i, e := range entries {
		out[i].Count = e.Count
		v := bytes.TrimSpace(e.Value)
		switch {
		case len(v) > 0 && v[0] == '"':
			typ = aggregations.TypeString
			if err := json.Unmarshal(v, &out[i].Str); err != nil {
				return nil, 0, fmt.Errorf("top_k value %d: %w", i, err)
			}
		case string(v) == "true" || string(v) == "false":
			typ = aggregations.TypeBool
			if v[0] == 't' {
				out[i].Value = 1
			}
		default:
			if err := json.Unmarshal(v, &out[i].Value); err != nil {
				return nil, 0, fmt.Errorf("top_k value %d: %w", i, err)
			}
		}
	}
	return out, typ, nil
}
