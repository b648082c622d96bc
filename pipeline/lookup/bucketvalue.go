package lookup

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/jsonenc"
)

// bucketEntry is one bucket of a bucketed feature's value: its key and the
// aggregation over its events (val: typ, v, list, str, strs and hasV as a
// feature's value has them; no status).
type bucketEntry struct {
	key string
	val value
}

// foldBuckets is fold for a bucketed feature (config.Feature.Bucket): its
// value is the map aggregations.FinalizeBuckets gives (at most MaxBuckets
// buckets and "__other__"), each bucket finalized as an unbucketed feature
// of its kind and type would be (a number, a string, a list of numbers or
// strings for first_k/last_k, a list of {value, count} with its error for
// top_k; null for a variance_samp of one event), with fold's statuses. An
// empty window (or an expired one) is an empty map for count, sum and
// approx_distinct and null for the others, the list kinds included (a
// bucket that is in the map has events, so its list is never empty). It
// allocates the map and each bucket's list.
func foldBuckets(fv value, f pickedFeature, v *lookupView, T int64) (value, error) {
	ir, status, updated, err := foldIR(f.def, v, T)
	if err != nil {
		return fv, err
	}
	fv.updated = updated
	if !f.warming {
		fv.status = status
	}
	bs := aggregations.FinalizeBuckets(ir, f.def.MaxBuckets)
	if len(bs) == 0 {
		if f.def.Aggregation.EmptyIsZero() {
			fv.buckets, fv.hasV = []bucketEntry{}, true
		}
		return fv, nil
	}
	fv.buckets = make([]bucketEntry, len(bs))
	for i, b := range bs {
		e := &fv.buckets[i]
		e.key, e.val.typ = b.Key, fv.typ
		finalizeInto(&e.val, f.def.Aggregation, f.def.Window, b.IR)
	}
	fv.hasV = true
	return fv, nil
}

// finalizeInto sets fv's value (and hasV) to the aggregation k of ir, by
// k and fv.typ: a top_k list (with its error; w gives k and whether the
// values are strings), a string or list of strings, a list, or a number.
func finalizeInto(fv *value, k aggregations.Kind, w aggregations.Window, ir aggregations.IR) {
	switch {
	case k == aggregations.TopK:
		fv.topErr = aggregations.TopKError(ir)
		fv.top, fv.hasV = aggregations.FinalizeTopValues(w, ir)
	case fv.typ == aggregations.TypeString && k.List():
		fv.strs, fv.hasV = aggregations.FinalizeStringList(k, ir)
	case fv.typ == aggregations.TypeString:
		fv.str, fv.hasV = aggregations.FinalizeString(k, ir)
	case k.List():
		fv.list, fv.hasV = aggregations.FinalizeList(k, ir)
	default:
		fv.v, fv.hasV = aggregations.Finalize(k, ir)
	}
}

// appendBuckets appends a bucketed value as a JSON object from bucket key to
// value, keys in increasing order (as encoding/json writes a map).
func appendBuckets(b []byte, bs []bucketEntry) []byte {
	b = append(b, '{')
	for i := range bs {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, bs[i].key)
		b = append(b, ':')
		b = bs[i].val.appendValue(b)
	}
	return append(b, '}')
}

// publicBuckets is a bucketed value as FeatureValue.Buckets: each bucket a
// FeatureValue carrying only its value and type.
func publicBuckets(bs []bucketEntry) map[string]FeatureValue {
	m := make(map[string]FeatureValue, len(bs))
	for i := range bs {
		m[bs[i].key] = bs[i].val.public()
	}
	return m
}

// bucketsJSON is FeatureValue.Buckets as encoding/json writes it under
// "value": a map from bucket key to each bucket's JSON value.
func bucketsJSON(m map[string]FeatureValue) map[string]any {
	out := make(map[string]any, len(m))
	for k, fv := range m {
		out[k] = fv.jsonValue()
	}
	return out
}

// unmarshalBuckets reads a JSON object "value" into Buckets.
func (fv *FeatureValue) unmarshalBuckets(raw []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("feature value map: %w", err)
	}
	fv.Buckets = make(map[string]FeatureValue, len(m))
	for k, r := range m {
		var b FeatureValue
		if err := b.UnmarshalJSON(append(append([]byte(`{"value":`), bytes.TrimSpace(r)...), '}')); err != nil {
			return fmt.Errorf("bucket %q: %w", k, err)
		}
		fv.Buckets[k] = b
	}
	return nil
}
