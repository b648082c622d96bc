package worker

import (
	"errors"
	"fmt"
	"math"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/schemas"
)

// Reason codes of dead-lettered records, also the "reason" metric label and
// the featurepipe.reason header. Stable: alerts and dashboards use them.
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
)

// rejection is why a record cannot be applied.
type rejection struct {
	reason string
	detail string
}

func (r *rejection) Error() string { return r.reason + ": " + r.detail }

func reject(reason, format string, args ...any) *rejection {
	return &rejection{reason: reason, detail: fmt.Sprintf(format, args...)}
}

// decoded is a valid event ready to apply.
type decoded struct {
	key    string
	ts     int64
	values []float64 // per sourcePlan.fields
}

// decode validates one source record against its plan. values is reused.
func (w *Worker) decode(plan *sourcePlan, r *kgo.Record, now int64, out *decoded) *rejection {
	_, rec, err := w.registry.Decode(r.Value)
	switch {
	case errors.Is(err, schemas.ErrNotSingleObject):
		return reject(ReasonNotAvro, "%v", err)
	case errors.Is(err, schemas.ErrUnknownSchema):
		return reject(ReasonUnknownSchema, "%v", err)
	case err != nil:
		return reject(ReasonMalformed, "%v", err)
	}
	key, err := schemas.String(rec, plan.keyField)
	if err != nil {
		return reject(ReasonInvalidField, "entity key: %v", err)
	}
	switch {
	case key == "":
		return reject(ReasonEmptyKey, "field %q is empty", plan.keyField)
	case len(key) > w.o.MaxKeyBytes:
		return reject(ReasonKeyTooLarge, "field %q is %d bytes; the limit is %d", plan.keyField, len(key), w.o.MaxKeyBytes)
	case string(r.Key) != key:
		return reject(ReasonKeyMismatch, "record key %.64q differs from field %q = %.64q: produce with the entity key as the Kafka key", r.Key, plan.keyField, key)
	}
	ts, err := schemas.Int(rec, plan.src.EventTime)
	if err != nil {
		return reject(ReasonInvalidField, "event time: %v", err)
	}
	switch {
	case ts < 0:
		return reject(ReasonTooOld, "event time %d is before 1970", ts)
	case ts > now+w.o.MaxFuture.Milliseconds():
		return reject(ReasonFuture, "event time %d is more than %s after now (%d)", ts, w.o.MaxFuture, now)
	}
	out.key, out.ts = key, ts
	out.values = out.values[:0]
	for _, f := range plan.fields {
		v, err := schemas.Float(rec, f)
		if err != nil {
			return reject(ReasonInvalidField, "%v", err)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return reject(ReasonNonFinite, "field %q is %v", f, v)
		}
		out.values = append(out.values, v)
	}
	return nil
}
