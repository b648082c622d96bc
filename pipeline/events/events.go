// Package events decodes and validates source records into events: the one
// definition of what a valid event is, shared by the stream workers and the
// backfill job so that both see exactly the same events.
package events

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/schemas"
)

// Reason codes of rejected records: the featurepipe.reason header of a dead
// letter and the "reason" metric label. Stable: alerts and dashboards use them.
const (
	ReasonNotAvro       = "not_avro"         // no single-object marker, or too short
	ReasonUnknownSchema = "unknown_schema"   // fingerprint of no schema the feature file names
	ReasonMalformed     = "malformed"        // Avro body truncated or garbage
	ReasonInvalidField  = "invalid_field"    // a needed field is missing, null or wrongly typed
	ReasonNonFinite     = "non_finite_value" // NaN or ±Inf
	ReasonEmptyKey      = "empty_key"        // entity key is ""
	ReasonKeyTooLarge   = "key_too_large"    // entity key longer than MaxKeyBytes
	ReasonKeyMismatch   = "key_mismatch"     // Kafka record key differs from the event's entity key
	ReasonTooOld        = "timestamp_before_1970"
	ReasonFuture        = "timestamp_in_future" // later than now + MaxFuture
	// ReasonFilterError: a feature's where could not be evaluated on the
	// record (e.g. int() of an out-of-range double). The whole record is
	// rejected, for all the features of its source: a record counts for
	// all of them or for none, never for some.
	ReasonFilterError = "filter_error"
)

// Reasons lists every reason code.
func Reasons() []string {
	return []string{ReasonNotAvro, ReasonUnknownSchema, ReasonMalformed, ReasonInvalidField, ReasonNonFinite,
		ReasonEmptyKey, ReasonKeyTooLarge, ReasonKeyMismatch, ReasonTooOld, ReasonFuture, ReasonFilterError}
}

// Rejection is why a record cannot be applied.
type Rejection struct {
	Reason string // one of the Reason* codes
	Detail string // human-readable, names the field and the problem
}

func (r *Rejection) Error() string { return r.Reason + ": " + r.Detail }

func reject(reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Event is a valid decoded event.
type Event struct {
	// Key is the entity key of the plan's features (keys.EntityKey over
	// Plan.EntityKeys).
	Key string
	// Rekeyed holds, for a source plan with Rekeys, the entity key of each
	// re-keying, parallel to Plan.Rekeys.
	Rekeyed []string
	TS      int64 // event time, epoch ms
	// Values holds Plan.Width() numbers: the value of each of Plan.Fields,
	// then, for each feature with a where (FeaturePlan.Filtered), 1 if the
	// where holds for the event and 0 if not. Use FeaturePlan.Value and
	// FeaturePlan.Counts rather than indexing it.
	Values  []float64
	filter  config.FilterInput // reused activation of the wheres
	keyVals []string           // scratch of entityKey
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
type Decoder struct {
	schemas     *schemas.Set
	maxFutureMS int64
	maxKeyBytes int
}

// NewDecoder knows every schema cfg names.
func NewDecoder(cfg *config.File, l Limits) *Decoder {
	if l.MaxFuture <= 0 {
		l.MaxFuture = DefaultMaxFuture
	}
	if l.MaxKeyBytes <= 0 {
		l.MaxKeyBytes = DefaultMaxKeyBytes
	}
	reg := schemas.NewSet()
	for _, s := range cfg.Sources {
		reg.Add(s.Schema)
	}
	return &Decoder{schemas: reg, maxFutureMS: l.MaxFuture.Milliseconds(), maxKeyBytes: l.MaxKeyBytes}
}

// Decode validates one source record (Kafka key and value) against its plan.
// now (epoch ms) bounds future event times. out.Values is reused.
func (d *Decoder) Decode(plan *Plan, key, value []byte, now int64, out *Event) *Rejection {
	_, rec, err := d.schemas.Decode(value)
	switch {
	case errors.Is(err, schemas.ErrNotSingleObject):
		return reject(ReasonNotAvro, "%v", err)
	case errors.Is(err, schemas.ErrUnknownSchema):
		return reject(ReasonUnknownSchema, "%v", err)
	case err != nil:
		return reject(ReasonMalformed, "%v", err)
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
	for _, f := range plan.Fields {
		v, err := schemas.Float(rec, f)
		if err != nil {
			return reject(ReasonInvalidField, "%v", err)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return reject(ReasonNonFinite, "field %q is %v", f, v)
		}
		out.Values = append(out.Values, v)
	}
	if plan.filters > 0 {
		return d.filter(plan, rec, out)
	}
	return nil
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
