// Package events decodes and validates source records into events: the one
// definition of what a valid event is, shared by the stream workers and the
// backfill job so that both see exactly the same events.
package events

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/schemaregistry"
	"github.com/featurepipe/featurepipe/schemas"
)

// Reason codes of rejected records: the featurepipe.reason header of a dead
// letter and the "reason" metric label. Stable: alerts and dashboards use them.
const (
	ReasonNotAvro       = "not_avro"       // no single-object marker (or Confluent magic byte), or too short
	ReasonUnknownSchema = "unknown_schema" // fingerprint of no schema the feature file names, or a schema id the registry does not know
	ReasonMalformed     = "malformed"      // Avro body truncated or garbage
	// ReasonIncompatibleSchema: the record's writer schema cannot be read
	// as the source's schema by Avro's resolution rules for a field the
	// features read (missing without a reader default, a type that does not
	// promote, another record name), or a field the writer allows to be
	// null is null where the source's schema does not.
	ReasonIncompatibleSchema = "incompatible_schema"
	ReasonInvalidField       = "invalid_field"    // a needed field is missing, null or wrongly typed
	ReasonNonFinite          = "non_finite_value" // NaN or ±Inf
	ReasonEmptyKey           = "empty_key"        // entity key is ""
	ReasonKeyTooLarge        = "key_too_large"    // entity key longer than MaxKeyBytes
	ReasonKeyMismatch        = "key_mismatch"     // Kafka record key differs from the event's entity key
	ReasonTooOld             = "timestamp_before_1970"
	ReasonFuture             = "timestamp_in_future" // later than now + MaxFuture
	// ReasonFilterError: a feature's where could not be evaluated on the
	// record (e.g. int() of an out-of-range double). The whole record is
	// rejected, for all the features of its source: a record counts for
	// all of them or for none, never for some.
	ReasonFilterError = "filter_error"
	// ReasonInexactLong: a long field read by last, first, first_k or
	// last_k is beyond ±2^53, where a float64 (the tiles' number) would
	// round it. Rejected rather than served rounded.
	ReasonInexactLong = "inexact_long"
	// ReasonInvalidString: a string field read by last, first, first_k or
	// last_k is not valid UTF-8 (every output that carries it, JSON,
	// Parquet STRING, Arrow utf8, requires UTF-8; replacing the bad bytes
	// would serve a value the event does not hold) or is longer than
	// MaxStringBytes; or a string bucket key (config.Feature.Bucket) is.
	ReasonInvalidString = "invalid_string"
)

// MaxStringBytes bounds a string value kept by last, first, first_k or
// last_k (in bytes of UTF-8): a tile of a last_k keeps up to k of them
// (k <= 1000: at most 256 KiB of strings, within Kafka's default 1 MiB
// message for the tile's feature-log record), and every lookup answer and
// training row carries them. Ids, codes, categories and countries are far
// shorter; a longer value is dead-lettered (ReasonInvalidString), never
// truncated. It bounds a string bucket key (config.Feature.Bucket) too:
// a tile keeps up to aggregations.BucketsMax of them. Fixed, not a Limit:
// the workers and backfill must agree.
const MaxStringBytes = 256

// Reasons lists every reason code.
func Reasons() []string {
	return []string{ReasonNotAvro, ReasonUnknownSchema, ReasonMalformed, ReasonIncompatibleSchema, ReasonInvalidField, ReasonNonFinite,
		ReasonEmptyKey, ReasonKeyTooLarge, ReasonKeyMismatch, ReasonTooOld, ReasonFuture, ReasonFilterError, ReasonInexactLong, ReasonInvalidString}
}

// ReasonSchemaRegistry is the Reason of a Temporary rejection: the schema
// registry could not be asked (unreachable past its retry budget, or it
// refused the credentials). It is not a dead-letter reason.
const ReasonSchemaRegistry = "schema_registry_error"

// Rejection is why a record cannot be applied.
type Rejection struct {
	Reason string // one of the Reason* codes
	Detail string // human-readable, names the field and the problem
	// Temporary means the record itself may be fine: its writer schema
	// could not be fetched from the schema registry (Reason
	// ReasonSchemaRegistry). Callers must not dead-letter it: a worker
	// stops (nothing of the batch is committed; a restart resumes at the
	// record), a backfill fails, produce reports the error.
	Temporary bool
}

func (r *Rejection) Error() string { return r.Reason + ": " + r.Detail }

func reject(reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Event is a valid decoded event. It is also Decode's scratch (reused
// activations of the wheres, projected values): use one per goroutine.
type Event struct {
	// Key is the entity key of the plan's features (keys.EntityKey over
	// Plan.EntityKeys).
	Key string
	// Rekeyed holds, for a source plan with Rekeys, the entity key of each
	// re-keying, parallel to Plan.Rekeys.
	Rekeyed []string
	TS      int64 // event time, epoch ms
	// Values holds Plan.Width() numbers: the value of each of Plan.Fields
	// (read by its Plan.Encodings entry),
	// then, for each feature with a where (FeaturePlan.Filtered), 1 if the
	// where holds for the event and 0 if not. Use FeaturePlan.Value and
	// FeaturePlan.Counts rather than indexing it.
	Values []float64
	// Strs holds, for a plan with a string slot (EncodeString), one string
	// per Plan.Fields entry: the value of each EncodeString slot, "" for the
	// others. It is empty for every other plan: number features pay nothing.
	// Use FeaturePlan.Str rather than indexing it.
	Strs []string
	// Buckets holds, for a plan with bucketed features, the bucket key of
	// each of Plan.BucketFields (see bucketValue); empty otherwise. Use
	// FeaturePlan.Bucket rather than indexing it.
	Buckets    []string
	filter     config.FilterInput    // reused activation of the wheres
	projFilter config.ProjectedInput // the same, for the fast path
	keyVals    []string              // scratch of entityKey
	proj       []schemas.Projected
}

// Defaults of Limits. The stream workers always use them (they have no flag
// to change them); the batch commands' --max-future defaults to
// DefaultMaxFuture and must stay at it to see the events the workers saw.
const (
	DefaultMaxFuture   = 24 * time.Hour // Limits.MaxFuture
	DefaultMaxKeyBytes = 1024           // Limits.MaxKeyBytes
)

// Limits bound what a valid event may be. The zero value means the defaults.
type Limits struct {
	// MaxFuture is how far after now an event time may be. Default
	// DefaultMaxFuture (24h).
	MaxFuture time.Duration
	// MaxKeyBytes bounds each entity key field value (a composite key is
	// longer). Default DefaultMaxKeyBytes (1024).
	MaxKeyBytes int
}

// Decoder decodes the records of the sources of one feature file. Safe for
// concurrent use.
//
// Writer schemas: a single-object record's writer is found by fingerprint
// among every source's schema and writer_schemas; a Confluent record's by
// its schema id in the schema registry (kafka.schema_registry), fetched once
// per id and kept. A record whose writer is not the source's schema is read
// as the source's schema by Avro's resolution rules for the fields its plan
// reads (Plan.Reads); the resolution is worked out once per (plan, writer
// schema) and cached, so a record costs one map look-up more than a record
// written with the source's schema (which costs nothing more).
type Decoder struct {
	schemas     *schemas.Set
	registry    *schemaregistry.Client // nil when no source is confluent
	registryErr error                  // why registry is nil although a source is confluent
	byID        sync.Map               // uint32 -> *schemas.Schema: the registry's schemas, read without a lock
	resolutions sync.Map               // resolutionKey -> *resolution
	maxFutureMS int64
	maxKeyBytes int
}

type resolutionKey struct {
	plan   *Plan
	writer *schemas.Schema
}

type resolution struct {
	r   *schemas.Resolution
	err error
	// fast is the plan's fast path for records of this writer schema,
	// when the resolution is the identity (see Plan.compileFastFor).
	fast *fastPlan
}

// NewDecoder knows every schema cfg names. When a source uses encoding
// confluent it makes a schema registry client from kafka.schema_registry,
// reading the password from the environment variable password_env names
// (an unset variable sends an empty password; the registry's 401 says so).
func NewDecoder(cfg *config.File, l Limits) *Decoder {
	if l.MaxFuture <= 0 {
		l.MaxFuture = DefaultMaxFuture
	}
	if l.MaxKeyBytes <= 0 {
		l.MaxKeyBytes = DefaultMaxKeyBytes
	}
	d := &Decoder{schemas: schemas.NewSet(cfg.WriterSchemas()...), maxFutureMS: l.MaxFuture.Milliseconds(), maxKeyBytes: l.MaxKeyBytes}
	for _, s := range cfg.Sources {
		if s.Encoding != config.EncodingConfluent {
			continue
		}
		r := cfg.Kafka.SchemaRegistry
		o := schemaregistry.Options{URL: r.URL, Username: r.Username}
		if r.PasswordEnv != "" {
			o.Password = os.Getenv(r.PasswordEnv)
		}
		d.registry, d.registryErr = schemaregistry.New(o)
		break
	}
	return d
}

// NewDecoderWith is NewDecoder with reg as the schema registry client
// instead of one made from kafka.schema_registry (to share one client, or
// to set its timeouts). A nil reg means NewDecoder's.
func NewDecoderWith(cfg *config.File, l Limits, reg *schemaregistry.Client) *Decoder {
	d := NewDecoder(cfg, l)
	if reg != nil {
		d.registry, d.registryErr = reg, nil
	}
	return d
}

// Registry returns the schema registry client, or nil when no source of
// the feature file uses encoding confluent (or the client could not be
// made: see RegistryErr).
func (d *Decoder) Registry() *schemaregistry.Client { return d.registry }

// RegistryErr is why Registry is nil although a source is confluent.
func (d *Decoder) RegistryErr() error { return d.registryErr }

// writerByID returns the registry schema id, fetching it on first use
// (bounded by the client's timeout and retry budget).
func (d *Decoder) writerByID(id uint32) (*schemas.Schema, *Rejection) {
	if s, ok := d.byID.Load(id); ok {
		return s.(*schemas.Schema), nil
	}
	if d.registry == nil {
		err := d.registryErr
		if err == nil {
			err = errors.New("no kafka.schema_registry")
		}
		return nil, &Rejection{Reason: ReasonSchemaRegistry, Detail: fmt.Sprintf("schema id %d: %v", id, err), Temporary: true}
	}
	s, err := d.registry.SchemaByID(context.Background(), id)
	switch {
	case errors.Is(err, schemaregistry.ErrNotFound):
		return nil, reject(ReasonUnknownSchema, "schema id %d: %v", id, err)
	case err != nil:
		return nil, &Rejection{Reason: ReasonSchemaRegistry, Detail: fmt.Sprintf("schema id %d: %v", id, err), Temporary: true}
	}
	d.byID.Store(id, s)
	return s, nil
}

// resolution is the resolution of writer w to plan's source schema, worked
// out on first use and cached.
func (d *Decoder) resolution(plan *Plan, w *schemas.Schema) *resolution {
	key := resolutionKey{plan, w}
	v, ok := d.resolutions.Load(key)
	if !ok {
		res := &resolution{}
		res.r, res.err = schemas.Resolve(w, plan.Source.Schema, plan.reads)
		if res.err == nil && res.r.Identity() {
			res.fast = plan.compileFastFor(w)
		}
		v, _ = d.resolutions.LoadOrStore(key, res)
	}
	return v.(*resolution)
}

// resolve reads rec, written with w, as plan's source schema.
func (d *Decoder) resolve(plan *Plan, w *schemas.Schema, rec map[string]any) *Rejection {
	res := d.resolution(plan, w)
	if res.err != nil {
		return reject(ReasonIncompatibleSchema, "%v", res.err)
	}
	if err := res.r.Apply(rec); err != nil {
		return reject(ReasonIncompatibleSchema, "%v", err)
	}
	return nil
}

// Decode validates one source record (Kafka key and value) against its plan.
// now (epoch ms) bounds future event times. out.Values is reused.
//
// For a source with encoding confluent the first record of a schema id not
// seen yet waits for the registry (up to its timeout and retry budget); a
// registry that cannot be asked gives a Temporary rejection, which must not
// be dead-lettered.
func (d *Decoder) Decode(plan *Plan, key, value []byte, now int64, out *Event) *Rejection {
	if d.tryFast(plan, key, value, now, out, false) {
		return nil
	}
	return d.decodeGeneric(plan, key, value, now, out)
}

// Check is Decode for a caller that needs only the verdict, not the event
// (produce checks that the workers will accept a record it sends): the same
// rejection for every record, at a lower cost for a record the fast path
// reads (it builds no string of the event: no entity or re-keyed key, kept
// string or bucket key, only their checks). scratch is reused like Decode's
// out; its content afterwards is unspecified.
func (d *Decoder) Check(plan *Plan, key, value []byte, now int64, scratch *Event) *Rejection {
	if d.tryFast(plan, key, value, now, scratch, true) {
		return nil
	}
	return d.decodeGeneric(plan, key, value, now, scratch)
}

// tryFast is decodeFast when the record is one a projection reads: written
// with the source's own schema, or with a writer schema known already (a
// fingerprint of the file, a registry id fetched before) whose resolution to
// it is the identity for the fields the plan reads.
func (d *Decoder) tryFast(plan *Plan, key, value []byte, now int64, out *Event, check bool) bool {
	if plan.generic {
		return false
	}
	var w *schemas.Schema
	var body []byte
	if plan.Source.Encoding == config.EncodingConfluent {
		id, b, err := schemas.ConfluentID(value)
		if err != nil {
			return false
		}
		s, ok := d.byID.Load(id)
		if !ok {
			return false // the generic path fetches it
		}
		w, body = s.(*schemas.Schema), b
	} else {
		var ok bool
		if w, body, ok = d.schemas.Split(value); !ok {
			return false
		}
	}
	f := plan.fast
	if w != plan.Source.Schema {
		f = d.resolution(plan, w).fast
	}
	return f != nil && d.decodeFast(plan, f, key, body, now, out, check)
}

// decodeGeneric is Decode through goavro's native record: every record,
// every writer schema, every rejection.
func (d *Decoder) decodeGeneric(plan *Plan, key, value []byte, now int64, out *Event) *Rejection {
	var w *schemas.Schema
	var rec map[string]any
	var err error
	if plan.Source.Encoding == config.EncodingConfluent {
		id, body, err := schemas.ConfluentID(value)
		if err != nil {
			return reject(ReasonNotAvro, "%v", err)
		}
		var rej *Rejection
		if w, rej = d.writerByID(id); rej != nil {
			return rej
		}
		if rec, err = w.DecodeBinary(body); err != nil {
			return reject(ReasonMalformed, "schema id %d: %v", id, err)
		}
	} else {
		w, rec, err = d.schemas.Decode(value)
		switch {
		case errors.Is(err, schemas.ErrNotSingleObject):
			return reject(ReasonNotAvro, "%v", err)
		case errors.Is(err, schemas.ErrUnknownSchema):
			return reject(ReasonUnknownSchema, "%v", err)
		case err != nil:
			return reject(ReasonMalformed, "%v", err)
		}
	}
	if w != plan.Source.Schema {
		if rej := d.resolve(plan, w, rec); rej != nil {
			return rej
		}
	}
	recordKey, rej := d.entityKey(rec, plan.KeyFields, &out.keyVals)
	if rej != nil {
		return rej
	}
	if string(key) != recordKey {
		return reject(ReasonKeyMismatch, "record key %.64q differs from %s = %.64q: produce with the entity key as the Kafka key", key, fieldsText(plan.KeyFields), recordKey)
	}
	entityKey := recordKey
	if plan.rekeyed() {
		if entityKey, rej = d.entityKey(rec, plan.EntityKeys, &out.keyVals); rej != nil {
			return rej
		}
	}
	out.Rekeyed = out.Rekeyed[:0]
	for _, r := range plan.Rekeys {
		k, rej := d.entityKey(rec, r.Entity.Keys, &out.keyVals)
		if rej != nil {
			return rej
		}
		out.Rekeyed = append(out.Rekeyed, k)
	}
	ts, err := schemas.Int(rec, plan.Source.EventTime)
	if err != nil {
		return reject(ReasonInvalidField, "event time: %v", err)
	}
	switch {
	case ts < 0:
		return reject(ReasonTooOld, "event time %d is before 1970", ts)
	case ts > now+d.maxFutureMS:
		return reject(ReasonFuture, "event time %d is more than %s after now (%d)", ts, time.Duration(d.maxFutureMS)*time.Millisecond, now)
	}
	out.Key, out.TS = entityKey, ts
	out.Values = out.Values[:0]
	clear(out.Strs)
	out.Strs = out.Strs[:0]
	if plan.strings {
		if n := len(plan.Fields); cap(out.Strs) < n {
			out.Strs = make([]string, n)
		} else {
			out.Strs = out.Strs[:n]
		}
	}
	for i, f := range plan.Fields {
		switch plan.Encodings[i] {
		case EncodeString:
			v, err := schemas.String(rec, f)
			if err != nil {
				return reject(ReasonInvalidField, "%v", err)
			}
			if len(v) > MaxStringBytes {
				return reject(ReasonInvalidString, "field %q is %d bytes; the limit of a kept string is %d", f, len(v), MaxStringBytes)
			}
			if !utf8.ValidString(v) {
				return reject(ReasonInvalidString, "field %q is not valid UTF-8", f)
			}
			out.Values = append(out.Values, 0)
			out.Strs[i] = v
			continue
		case EncodeDistinct:
			v, err := distinctValue(rec, f, plan.types[i])
			if err != nil {
				return reject(ReasonInvalidField, "%v", err)
			}
			out.Values = append(out.Values, v)
			continue
		case EncodeExactLong:
			v, rej := exactLongValue(rec, f)
			if rej != nil {
				return rej
			}
			out.Values = append(out.Values, v)
			continue
		case EncodeBool:
			v, err := boolValue(rec, f)
			if err != nil {
				return reject(ReasonInvalidField, "%v", err)
			}
			out.Values = append(out.Values, v)
			continue
		}
		v, err := schemas.Float(rec, f)
		if err != nil {
			return reject(ReasonInvalidField, "%v", err)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return reject(ReasonNonFinite, "field %q is %v", f, v)
		}
		out.Values = append(out.Values, v)
	}
	clear(out.Buckets)
	out.Buckets = out.Buckets[:0]
	for i, f := range plan.BucketFields {
		v, err := bucketValue(rec, f, plan.bucketTypes[i])
		if err != nil {
			return reject(ReasonInvalidField, "bucket: %v", err)
		}
		if len(v) > MaxStringBytes {
			return reject(ReasonInvalidString, "bucket field %q is %d bytes; the limit of a bucket key is %d", f, len(v), MaxStringBytes)
		}
		if !utf8.ValidString(v) {
			return reject(ReasonInvalidString, "bucket field %q is not valid UTF-8", f)
		}
		out.Buckets = append(out.Buckets, v)
	}
	if plan.filters > 0 {
		return d.filter(plan, rec, out)
	}
	return nil
}

// bucketValue reads a bucketed feature's bucket field of type t as its
// bucket key (config.Feature.Bucket): a string as it is, a long or int in
// base 10, a boolean as "true" or "false", and a null (a nullable field
// holding null) as aggregations.NullBucket, a bucket like the others rather
// than a rejection, so that the buckets add up to the unbucketed feature.
// A missing field or another type is an error. Costs a formatted number
// for a long; nothing for a string or a boolean.
func bucketValue(rec map[string]any, name string, t aggregations.ValueType) (string, error) {
	var v string
	var err error
	switch t {
	case aggregations.TypeLong:
		var n int64
		if n, err = schemas.Int(rec, name); err == nil {
			v = strconv.FormatInt(n, 10)
		}
	case aggregations.TypeBool:
		var b bool
		if b, err = schemas.Bool(rec, name); err == nil {
			v = strconv.FormatBool(b)
		}
	default:
		v, err = schemas.String(rec, name)
	}
	if errors.Is(err, schemas.ErrNullField) {
		return aggregations.NullBucket, nil
	}
	return v, err
}

// filter appends to out.Values the outcome of each feature's where on rec.
// An evaluation error rejects the whole record (ReasonFilterError).
func (d *Decoder) filter(plan *Plan, rec map[string]any, out *Event) *Rejection {
	out.filter.Rec = rec
	defer func() { out.filter.Rec = nil }() // do not keep the record alive
	for i := range plan.Features {
		f := &plan.Features[i]
		if !f.Filtered() {
			continue
		}
		ok, err := f.Feature.Filter.Match(&out.filter)
		if err != nil {
			return reject(ReasonFilterError, "feature %s: %v", f.ID, err)
		}
		m := 0.0
		if ok {
			m = 1
		}
		out.Values = append(out.Values, m)
	}
	return nil
}

// entityKey builds the entity key over fields of rec with keys.EntityKey
// (the one key-building function), checking each value: not empty, at most
// MaxKeyBytes (per field: a composite key may be longer). vals is scratch.
func (d *Decoder) entityKey(rec map[string]any, fields []string, vals *[]string) (string, *Rejection) {
	*vals = (*vals)[:0]
	for _, f := range fields {
		v, err := schemas.String(rec, f)
		if err != nil {
			return "", reject(ReasonInvalidField, "entity key: %v", err)
		}
		if v == "" {
			return "", reject(ReasonEmptyKey, "entity key field %q is empty", f)
		}
		if len(v) > d.maxKeyBytes {
			return "", reject(ReasonKeyTooLarge, "field %q is %d bytes; the limit is %d", f, len(v), d.maxKeyBytes)
		}
		*vals = append(*vals, v)
	}
	return keys.EntityKey(*vals), nil
}

// fieldsText names key fields for messages: field "user_id", or fields
// [user_id, merchant_id].
func fieldsText(fields []string) string {
	if len(fields) == 1 {
		return fmt.Sprintf("field %q", fields[0])
	}
	return "fields [" + strings.Join(fields, ", ") + "]"
}
