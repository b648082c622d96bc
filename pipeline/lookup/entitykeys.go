package lookup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/featurepipe/featurepipe/internal/keys"
)

// Entity keys in requests. A single-key entity (key: user_id) is looked up
// by a plain string, "u1" (or an object naming its one field,
// {"user_id":"u1"}); a composite entity (keys: [user_id, merchant_id]) by
// an object with exactly its key fields, {"user_id":"u1","merchant_id":"m9"}.
// Both become the entity key string with keys.EntityKey, the function the
// workers and backfill key events with; answers and the lookup log carry
// that string (for a composite key, the JSON array of its values in the
// entity's key order: ["u1","m9"]).

// joinKeySet names a set of key fields independently of their order: the
// index of entities by Feast join keys.
func joinKeySet(fields []string) string {
	s := slices.Clone(fields)
	sort.Strings(s)
	return strings.Join(s, ",")
}

// lookupBody is LookupRequest as decoded from JSON: keys are strings or
// objects. Its fields are LookupRequest's (strict decoding rejects others).
type lookupBody struct {
	Entity         string            `json:"entity"`
	Keys           []json.RawMessage `json:"keys"`
	Features       []string          `json:"features"`
	FeatureService string            `json:"feature_service,omitempty"`
}

// requestKeys turns the raw keys of a request for info's entity into entity
// key strings, or a 400 naming the first bad key.
func requestKeys(info *entityInfo, raw []json.RawMessage) ([]string, error) {
	out := make([]string, len(raw))
	vals := make([]string, len(info.keys))
	for i, r := range raw {
		r = bytes.TrimSpace(r)
		if len(r) > 0 && r[0] == '{' {
			var obj map[string]any
			if err := json.Unmarshal(r, &obj); err != nil {
				return nil, badRequest("bad_key", "keys[%d]: %v", i, err)
			}
			if err := keyObject(info, obj, fmt.Sprintf("keys[%d]", i), vals); err != nil {
				return nil, err
			}
			out[i] = keys.EntityKey(vals)
			continue
		}
		if len(info.keys) > 1 {
			return nil, compositeKeyError(info, i)
		}
		var s string
		if err := json.Unmarshal(r, &s); err != nil {
			return nil, badRequest("bad_key", `keys[%d]: a key is a string (or an object {"%s": "..."}); got %s`, i, info.keys[0], truncateJSON(r))
		}
		out[i] = s
	}
	return out, nil
}

// compositeKeyError is the 400 for keys[i] given as a string to an entity
// with a composite key.
func compositeKeyError(info *entityInfo, i int) error {
	return badRequest("bad_key", "keys[%d]: entity %s has a composite key: give each key as an object with its fields %s, e.g. %s",
		i, info.name, strings.Join(info.keys, ", "), exampleKey(info.keys))
}

// keyObject checks obj, one key as an object, against the entity's key
// fields (each present, no other) and fills vals in key order. Values are
// strings, or integers (for long and int key fields), taken as decimal text.
func keyObject(info *entityInfo, obj map[string]any, where string, vals []string) error {
	for f := range obj {
		if !slices.Contains(info.keys, f) {
			return badRequest("bad_key", "%s: %q is not a key field of entity %s; its key fields: %s", where, f, info.name, strings.Join(info.keys, ", "))
		}
	}
	for j, f := range info.keys {
		v, ok := obj[f]
		if !ok {
			return badRequest("bad_key", "%s: missing key field %q of entity %s (key fields: %s)", where, f, info.name, strings.Join(info.keys, ", "))
		}
		s, err := keyValue(v)
		if err != nil {
			return badRequest("bad_key", "%s.%s: %v", where, f, err)
		}
		vals[j] = s
	}
	return nil
}

// keyValue is one key field's value as text: a string, or an integer.
func keyValue(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case float64:
		if x != float64(int64(x)) {
			return "", fmt.Errorf("%v is not an integer key", x)
		}
		return strconv.FormatInt(int64(x), 10), nil
	}
	return "", fmt.Errorf("a key field's value must be a string or an integer")
}

func exampleKey(fields []string) string {
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = fmt.Sprintf("%q:\"...\"", f)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func truncateJSON(r []byte) string {
	if len(r) > 64 {
		return string(r[:64]) + "..."
	}
	return string(r)
}
