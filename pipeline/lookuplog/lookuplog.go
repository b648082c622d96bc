// Package lookuplog is the lookup-log topic's codec: the record the lookup
// service writes for every answered (sampled) lookup, and that `featurepipe
// skew` replays as a spine through the backfill engine: what was served, for
// which key, as of which time, to which consumer. The lookup service writes
// records with the Append functions (no allocation), everything else with
// Encode, and every reader decodes with Decode (an Entry of maps) or, to
// follow every record, a Decoder (a reused Record of slices): one encoding,
// one place.
//
// Record value: one entry or more, one per line (the lookup service puts the
// entries of many keys, and of many requests, in one record; Entries splits
// them), no record key. Records of replicas before 2026-12-02 hold one entry
// each, keyed by its entity key. An entry is the JSON object, on one line:
//
//	{"entity":"user","key":"u1","at":1700000000123,"consumer":"fraud-model","service":"fraud_scoring","request":"9f2c01ab-1k","features":{"a@1":12.5,"b@2":null},"lists":{"c@1":[3,1.5]}}
//
// with "consumer", "service" and "request" left out when empty, "lists"
// (list features: first_k, last_k) left out without any, and the features
// and lists sorted by id, each once (the order and escaping of
// encoding/json). String features (last, first, first_k, last_k of a
// string field) follow in "strings" and "string_lists", then bucketed
// features in "buckets" ({"id":{"EUR":12.5,"__other__":3}}), bucketed
// string features (last, first of a string field) in "bucket_strings"
// ({"id":{"EUR":"m-3","__other__":null}}), top_k features in "tops", then
// bucketed first_k/last_k of numbers in "bucket_lists"
// ({"id":{"EUR":[3.5,1],"__other__":[2]}}), of a string field in
// "bucket_string_lists" ({"id":{"EUR":["m-3","m-1"]}}) and bucketed top_k
// in "bucket_tops" ({"id":{"EUR":{"error":0,"value":[{"value":"m-1","count":3}]}}}),
// each left out without any:
//
//	...,"strings":{"m@1":"café"},"string_lists":{"ms@1":["m-2","m-1"]}}
package lookuplog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strconv"

	"github.com/featurepipe/featurepipe/internal/jsonenc"
)

// Entry is one served key.
type Entry struct {
	Entity string `json:"entity"`
	Key    string `json:"key"`
	// At is the time the values are as of (the request time), epoch ms.
	At int64 `json:"at"`
	// Consumer is who asked: the consumer of the API token the request
	// carried, else the X-Featurepipe-Consumer header's name, else
	// "anonymous". Empty in records of older replicas (read it as
	// "anonymous").
	Consumer string `json:"consumer,omitempty"`
	// Service is the feature service the request named, or empty.
	Service string `json:"service,omitempty"`
	// Request identifies the request the entry is one key of: every key of
	// one request carries the same id, unique across replicas and restarts
	// ("<replica>-<sequence>", see AppendStart). Empty in records of older
	// replicas.
	Request string `json:"request,omitempty"`
	// Features maps feature id (name@version) to the value served; null for
	// an empty window served as null.
	Features map[string]*float64 `json:"features"`
	// Lists maps the feature id of each list feature served (first_k,
	// last_k) to the list served; null for an empty window. Absent without
	// list features (and in records of older replicas, which logged none).
	Lists map[string][]float64 `json:"lists,omitempty"`
	// Strings maps the feature id of each string feature served (last,
	// first of a string field) to the string served; null for an empty
	// window. Absent without such features (and in records of older
	// replicas).
	Strings map[string]*string `json:"strings,omitempty"`
	// StringLists maps the feature id of each string list feature served
	// (first_k, last_k of a string field) to the list served; null for an
	// empty window. Absent without such features.
	StringLists map[string][]string `json:"string_lists,omitempty"`
	// Buckets maps the feature id of each bucketed feature served (a map,
	// config.Feature.Bucket) to the map served, bucket key to value (null
	// for a bucket whose value is null); a null map for a null value.
	// Absent without bucketed features (and in records of older replicas).
	// Bucketed string features (last or first of a string field) are in
	// BucketStrings instead.
	Buckets map[string]map[string]*float64 `json:"buckets,omitempty"`
	// BucketStrings maps the feature id of each bucketed string feature
	// served (last or first of a string field with a bucket) to the map
	// served, bucket key to string (null for a bucket whose value is null);
	// a null map for a null value. Absent without such features (and in
	// records of older replicas, which did not log them). Records with
	// them are decoded by encoding/json (decodeFast leaves them).
	BucketStrings map[string]map[string]*string `json:"bucket_strings,omitempty"`
	// Tops maps the feature id of each top_k feature served to the value
	// served (its JSON text and error); null for an empty window. Absent
	// without top_k features. Records with tops are decoded by
	// encoding/json (decodeFast leaves them).
	Tops map[string]*ServedTop `json:"tops,omitempty"`
	// BucketLists maps the feature id of each bucketed list feature served
	// (first_k, last_k of a number field with a bucket) to the map served,
	// bucket key to list; a null map for a null value (an empty window).
	// Absent without such features (and in records of older replicas,
	// which did not log them). Records with them, and with BucketStringLists
	// or BucketTops, are decoded by encoding/json (decodeFast leaves them).
	BucketLists map[string]map[string][]float64 `json:"bucket_lists,omitempty"`
	// BucketStringLists is BucketLists for bucketed first_k, last_k of a
	// string field: bucket key to the list of strings served.
	BucketStringLists map[string]map[string][]string `json:"bucket_string_lists,omitempty"`
	// BucketTops maps the feature id of each bucketed top_k feature served
	// to the map served, bucket key to that bucket's top_k (its JSON text
	// and its own error, as Tops has them); a null map for a null value.
	BucketTops map[string]map[string]*ServedTop `json:"bucket_tops,omitempty"`
}

// FeatureIDs calls f with the id of every feature e served, whatever
// section holds it (numbers, lists, strings, string lists, bucketed maps,
// tops): each once per section entry; the lookup service logs a feature in
// one section only. Order: section by section, map order within one.
func (e *Entry) FeatureIDs(f func(id string)) {
	eachID(e.Features, f)
	eachID(e.Lists, f)
	eachID(e.Strings, f)
	eachID(e.StringLists, f)
	e.mapSectionIDs(f)
}

// mapSectionIDs calls f with the ids of the sections Record keeps only in
// its Entry: the bucketed maps and the tops.
func (e *Entry) mapSectionIDs(f func(id string)) {
	eachID(e.Buckets, f)
	eachID(e.BucketStrings, f)
	eachID(e.Tops, f)
	eachID(e.BucketLists, f)
	eachID(e.BucketStringLists, f)
	eachID(e.BucketTops, f)
}

// eachID calls f with every feature id of one section.
func eachID[V any](section map[string]V, f func(id string)) {
	for id := range section {
		f(id)
	}
}

// ServedTop is a top_k value as served: Value the JSON text the lookup
// API wrote ([{"value":..,"count":..},...]), Error the largest amount by
// which its counts may be below the true ones (aggregations.TopKError: 0
// while exact).
type ServedTop struct {
	Error int64           `json:"error"`
	Value json.RawMessage `json:"value"`
}

// Encode returns the record value of e, as the lookup service writes it.
func (e *Entry) Encode() ([]byte, error) {
	ids := make([]string, 0, len(e.Features))
	for id := range e.Features {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b := AppendStart(nil, e.Entity, e.Key, e.At, e.Consumer, e.Service, e.Request, 0)
	for i, id := range ids {
		v := e.Features[id]
		if v == nil {
			b = AppendFeature(b, i, id, 0, false)
		} else {
			b = AppendFeature(b, i, id, *v, true)
		}
	}
	if len(e.Lists) > 0 {
		ids = ids[:0]
		for id := range e.Lists {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		b = AppendListsStart(b)
		for i, id := range ids {
			l := e.Lists[id]
			b = AppendList(b, i, id, l, l != nil)
		}
	}
	if len(e.Strings) > 0 {
		b = AppendStringsStart(b)
		for i, id := range slices.Sorted(maps.Keys(e.Strings)) {
			v := e.Strings[id]
			if v == nil {
				b = AppendString(b, i, id, "", false)
			} else {
				b = AppendString(b, i, id, *v, true)
			}
		}
	}
	if len(e.StringLists) > 0 {
		b = AppendStringListsStart(b)
		for i, id := range slices.Sorted(maps.Keys(e.StringLists)) {
			l := e.StringLists[id]
			b = AppendStringList(b, i, id, l, l != nil)
		}
	}
	if len(e.Buckets) > 0 {
		b = AppendBucketsStart(b)
		for i, id := range slices.Sorted(maps.Keys(e.Buckets)) {
			m := e.Buckets[id]
			if m == nil {
				b = AppendBucketMapNull(b, i, id)
				continue
			}
			b = AppendBucketMapStart(b, i, id)
			for j, k := range slices.Sorted(maps.Keys(m)) {
				v := m[k]
				if v == nil {
					b = AppendBucket(b, j, k, 0, false)
				} else {
					b = AppendBucket(b, j, k, *v, true)
				}
			}
			b = AppendBucketMapEnd(b)
		}
	}
	if len(e.BucketStrings) > 0 {
		b = AppendBucketStringsStart(b)
		for i, id := range slices.Sorted(maps.Keys(e.BucketStrings)) {
			m := e.BucketStrings[id]
			if m == nil {
				b = AppendBucketMapNull(b, i, id)
				continue
			}
			b = AppendBucketMapStart(b, i, id)
			for j, k := range slices.Sorted(maps.Keys(m)) {
				v := m[k]
				if v == nil {
					b = AppendBucketString(b, j, k, "", false)
				} else {
					b = AppendBucketString(b, j, k, *v, true)
				}
			}
			b = AppendBucketMapEnd(b)
		}
	}
	if len(e.Tops) > 0 {
		b = AppendTopsStart(b)
		for i, id := range slices.Sorted(maps.Keys(e.Tops)) {
			v := e.Tops[id]
			if v == nil {
				b = AppendTop(b, i, id, nil, 0, false)
			} else {
				b = AppendTop(b, i, id, v.Value, v.Error, true)
			}
		}
	}
	if len(e.BucketLists) > 0 {
		b = AppendBucketListsStart(b)
		for i, id := range slices.Sorted(maps.Keys(e.BucketLists)) {
			b = appendBucketMap(b, i, id, e.BucketLists[id], func(b []byte, j int, k string, l []float64) []byte {
				return AppendBucketList(b, j, k, l, l != nil)
			})
		}
	}
	if len(e.BucketStringLists) > 0 {
		b = AppendBucketStringListsStart(b)
		for i, id := range slices.Sorted(maps.Keys(e.BucketStringLists)) {
			b = appendBucketMap(b, i, id, e.BucketStringLists[id], func(b []byte, j int, k string, l []string) []byte {
				return AppendBucketStringList(b, j, k, l, l != nil)
			})
		}
	}
	if len(e.BucketTops) > 0 {
		b = AppendBucketTopsStart(b)
		for i, id := range slices.Sorted(maps.Keys(e.BucketTops)) {
			b = appendBucketMap(b, i, id, e.BucketTops[id], func(b []byte, j int, k string, v *ServedTop) []byte {
				if v == nil {
					return AppendBucketTop(b, j, k, nil, 0, false)
				}
				return AppendBucketTop(b, j, k, v.Value, v.Error, true)
			})
		}
	}
	return AppendEnd(b), nil
}

// appendBucketMap appends the i-th bucketed feature id of a section with
// map m (null when nil), each bucket in key order written by bucket.
func appendBucketMap[V any](b []byte, i int, id string, m map[string]V, bucket func(b []byte, j int, key string, v V) []byte) []byte {
	if m == nil {
		return AppendBucketMapNull(b, i, id)
	}
	b = AppendBucketMapStart(b, i, id)
	for j, k := range slices.Sorted(maps.Keys(m)) {
		b = bucket(b, j, k, m[k])
	}
	return AppendBucketMapEnd(b)
}

// AppendStart appends the start of an entry's record value to b: everything
// up to its features. Then call AppendFeature for each feature, in id order,
// each id once (i counts them from 0), and AppendEnd. They allocate nothing
// beyond growing b.
//
// The entry's Request is request when seq is 0, else request, "-" and seq
// in base 36: the lookup service passes its replica id and the request's
// sequence number, so that no string is built per request.
func AppendStart(b []byte, entity, key string, at int64, consumer, service, request string, seq uint64) []byte {
	b = append(b, `{"entity":`...)
	b = jsonenc.AppendString(b, entity)
	b = append(b, `,"key":`...)
	b = jsonenc.AppendString(b, key)
	b = append(b, `,"at":`...)
	b = strconv.AppendInt(b, at, 10)
	if consumer != "" {
		b = append(b, `,"consumer":`...)
		b = jsonenc.AppendString(b, consumer)
	}
	if service != "" {
		b = append(b, `,"service":`...)
		b = jsonenc.AppendString(b, service)
	}
	if request != "" || seq != 0 {
		b = append(b, `,"request":`...)
		b = jsonenc.AppendString(b, request)
		if seq != 0 { // "-" and base-36 digits need no escaping: replace the closing quote
			b[len(b)-1] = '-'
			b = strconv.AppendUint(b, seq, 36)
			b = append(b, '"')
		}
	}
	return append(b, `,"features":{`...)
}

// AppendFeature appends the i-th feature (from 0) of an entry: its id and
// the value served, or null when ok is false (or the value is not finite).
func AppendFeature(b []byte, i int, id string, v float64, ok bool) []byte {
	b = appendMember(b, i, id)
	if !ok {
		return append(b, "null"...)
	}
	return jsonenc.AppendFloat(b, v)
}

// AppendListsStart closes the features and opens the lists of an entry:
// after the last AppendFeature, call it once, then AppendList for each list
// feature, in id order, each id once (i counts them from 0), then AppendEnd.
// An entry without list features leaves it out.
func AppendListsStart(b []byte) []byte { return append(b, `},"lists":{`...) }

// AppendList appends the i-th list (from 0) of an entry: its id and the
// list served as a JSON array of numbers (a non-finite element, which the
// aggregations never produce, as null), or null when ok is false.
func AppendList(b []byte, i int, id string, l []float64, ok bool) []byte {
	b = appendMember(b, i, id)
	if !ok {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for j, x := range l {
		if j > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendFloat(b, x)
	}
	return append(b, ']')
}

// AppendStringsStart closes the features (or the lists) and opens the
// string features of an entry: call it once after them, then AppendString
// for each string feature, in id order, each id once (i counts them from
// 0), then AppendStringListsStart or AppendEnd. An entry without string
// features leaves it out.
func AppendStringsStart(b []byte) []byte { return append(b, `},"strings":{`...) }

// AppendString appends the i-th string feature (from 0) of an entry: its
// id and the string served (JSON-escaped; invalid UTF-8 as U+FFFD, as
// encoding/json writes it), or null when ok is false.
func AppendString(b []byte, i int, id string, v string, ok bool) []byte {
	b = appendMember(b, i, id)
	if !ok {
		return append(b, "null"...)
	}
	return jsonenc.AppendString(b, v)
}

// AppendStringListsStart closes the previous section (features, lists or
// strings) and opens the string list features of an entry: then
// AppendStringList for each, in id order, each id once, then AppendEnd.
// An entry without string list features leaves it out.
func AppendStringListsStart(b []byte) []byte { return append(b, `},"string_lists":{`...) }

// AppendStringList appends the i-th string list (from 0) of an entry: its
// id and the list served as a JSON array of strings, or null when ok is
// false.
func AppendStringList(b []byte, i int, id string, l []string, ok bool) []byte {
	b = appendMember(b, i, id)
	if !ok {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for j, x := range l {
		if j > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, x)
	}
	return append(b, ']')
}

// AppendBucketsStart closes the features (or the lists) and opens the
// bucketed features of an entry: call it once after them, then, for each
// bucketed feature in id order (i counts them from 0), AppendBucketMapNull,
// or AppendBucketMapStart, AppendBucket for each bucket in key order (j
// counts them from 0) and AppendBucketMapEnd; then AppendEnd. An entry
// without bucketed features leaves it out.
func AppendBucketsStart(b []byte) []byte { return append(b, `},"buckets":{`...) }

// AppendBucketMapNull appends the i-th bucketed feature's id with a null map.
func AppendBucketMapNull(b []byte, i int, id string) []byte {
	return append(appendMember(b, i, id), "null"...)
}

// AppendBucketMapStart appends the i-th bucketed feature's id and opens its map.
func AppendBucketMapStart(b []byte, i int, id string) []byte {
	return append(appendMember(b, i, id), '{')
}

// AppendBucket appends the j-th bucket (from 0) of a map: its key and
// value, null when ok is false (or the value is not finite).
func AppendBucket(b []byte, j int, key string, v float64, ok bool) []byte {
	return AppendFeature(b, j, key, v, ok) // the same member: a name and a number
}

// AppendBucketMapEnd closes a map opened by AppendBucketMapStart.
func AppendBucketMapEnd(b []byte) []byte { return append(b, '}') }

// AppendBucketStringsStart closes the previous section and opens the
// bucketed string features of an entry (after "buckets", before "tops"):
// then, for each in id order (i counts them from 0), AppendBucketMapNull,
// or AppendBucketMapStart, AppendBucketString for each bucket in key order
// (j counts them from 0) and AppendBucketMapEnd; then the next section or
// AppendEnd. An entry without bucketed string features leaves it out.
func AppendBucketStringsStart(b []byte) []byte { return append(b, `},"bucket_strings":{`...) }

// AppendBucketString appends the j-th bucket (from 0) of a bucketed string
// feature's map: its key and the string served (escaped as AppendString
// does), null when ok is false.
func AppendBucketString(b []byte, j int, key string, v string, ok bool) []byte {
	return AppendString(b, j, key, v, ok) // the same member: a name and a string
}

// AppendTopsStart closes the previous section and opens the top_k
// features of an entry: then AppendTop for each, in id order, each id
// once, then AppendEnd. An entry without top_k features leaves it out.
func AppendTopsStart(b []byte) []byte { return append(b, `},"tops":{`...) }

// AppendTop appends the i-th top_k feature (from 0) of an entry: its id
// and {"error":e,"value":text} (text the JSON the lookup API wrote), or
// null when ok is false.
func AppendTop(b []byte, i int, id string, text []byte, e int64, ok bool) []byte {
	b = appendMember(b, i, id)
	if !ok {
		return append(b, "null"...)
	}
	b = append(b, `{"error":`...)
	b = strconv.AppendInt(b, e, 10)
	b = append(b, `,"value":`...)
	b = append(b, text...)
	return append(b, '}')
}

// AppendBucketListsStart closes the previous section and opens the
// bucketed list features (first_k, last_k of numbers) of an entry, after
// "tops": then, for each in id order (i counts them from 0),
// AppendBucketMapNull, or AppendBucketMapStart, AppendBucketList for each
// bucket in key order (j counts them from 0) and AppendBucketMapEnd; then
// the next section or AppendEnd. An entry without them leaves it out.
func AppendBucketListsStart(b []byte) []byte { return append(b, `},"bucket_lists":{`...) }

// AppendBucketList appends the j-th bucket (from 0) of a bucketed list
// feature's map: its key and the list served, as AppendList writes it.
func AppendBucketList(b []byte, j int, key string, l []float64, ok bool) []byte {
	return AppendList(b, j, key, l, ok)
}

// AppendBucketStringListsStart opens the bucketed string list features
// (first_k, last_k of a string field), after "bucket_lists": used as
// AppendBucketListsStart, with AppendBucketStringList for each bucket.
func AppendBucketStringListsStart(b []byte) []byte { return append(b, `},"bucket_string_lists":{`...) }

// AppendBucketStringList appends the j-th bucket (from 0) of a bucketed
// string list feature's map: its key and the list served, as
// AppendStringList writes it.
func AppendBucketStringList(b []byte, j int, key string, l []string, ok bool) []byte {
	return AppendStringList(b, j, key, l, ok)
}

// AppendBucketTopsStart opens the bucketed top_k features, after
// "bucket_string_lists": used as AppendBucketListsStart, with
// AppendBucketTop for each bucket.
func AppendBucketTopsStart(b []byte) []byte { return append(b, `},"bucket_tops":{`...) }

// AppendBucketTop appends the j-th bucket (from 0) of a bucketed top_k
// feature's map: its key and {"error":e,"value":text}, as AppendTop writes
// a top_k feature (e the bucket's own error).
func AppendBucketTop(b []byte, j int, key string, text []byte, e int64, ok bool) []byte {
	return AppendTop(b, j, key, text, e, ok)
}

// AppendEnd closes an entry started with AppendStart.
func AppendEnd(b []byte) []byte { return append(b, "}}"...) }

// Entries yields the entries of a record value, each one line (Decode or a
// Decoder reads it), in the order they were written; empty lines are
// skipped. A record of one entry, without a newline, yields itself.
func Entries(value []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for len(value) > 0 {
			line := value
			if i := bytes.IndexByte(value, '\n'); i >= 0 {
				line, value = value[:i], value[i+1:]
			} else {
				value = nil
			}
			if len(bytes.TrimSpace(line)) > 0 && !yield(line) {
				return
			}
		}
	}
}

// DecodeEach decodes every entry of a record value (see Entries) and passes
// each to fn, skipping those that do not decode: it returns how many it
// skipped, and the error of the first.
func DecodeEach(value []byte, fn func(*Entry)) (skipped int, err error) {
	for b := range Entries(value) {
		e, derr := Decode(b)
		if derr != nil {
			if skipped++; skipped == 1 {
				err = derr
			}
			continue
		}
		fn(e)
	}
	return skipped, err
}

// Decode parses one entry (a line of a record value, see Entries). Values as the Append functions write them
// take a hand-written path (decodeFast); any other JSON is decoded by
// encoding/json, with the same result.
func Decode(b []byte) (*Entry, error) {
	e, ok := decodeFast(b)
	if !ok {
		e = &Entry{}
		if err := json.Unmarshal(b, e); err != nil {
			return nil, fmt.Errorf("decode lookup log entry: %w", err)
		}
	}
	if e.Entity == "" || e.At == 0 {
		return nil, fmt.Errorf("decode lookup log entry: missing entity or time")
	}
	return e, nil
}

// appendMember appends the name of the i-th member (from 0) of a section's
// object: a comma after the first, the id and the colon.
func appendMember(b []byte, i int, id string) []byte {
	if i > 0 {
		b = append(b, ',')
	}
	b = jsonenc.AppendString(b, id)
	return append(b, ':')
}
