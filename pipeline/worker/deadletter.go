package worker

import (
	"strconv"

	"github.com/featurepipe/featurepipe/pipeline/events"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Dead-letter record headers. The record keeps the original key and value
// (truncated, with the original sizes in headers, when they would exceed
// MaxDeadLetterBytes).
const (
	HeaderReason          = "featurepipe.reason"           // an events.Reason* code
	HeaderError           = "featurepipe.error"            // human-readable detail
	HeaderSource          = "featurepipe.source"           // source name in the feature file
	HeaderSourceTopic     = "featurepipe.source.topic"     // original topic
	HeaderSourcePartition = "featurepipe.source.partition" // original partition, decimal
	HeaderSourceOffset    = "featurepipe.source.offset"    // original offset, decimal
	HeaderKeyBytes        = "featurepipe.key.bytes"        // original key size, when truncated
	HeaderValueBytes      = "featurepipe.value.bytes"      // original value size, when truncated
)

// MaxDeadLetterBytes bounds the key plus value copied into a dead letter, so
// that a record too large for the dead-letter topic can never block the worker.
const MaxDeadLetterBytes = 512 << 10

func (w *Worker) deadLetter(plan *events.Plan, r *kgo.Record, rej *events.Rejection) *kgo.Record {
	d := &kgo.Record{
		Topic: w.o.Config.Kafka.DeadLetterTopic,
		Key:   r.Key,
		Value: r.Value,
		Headers: []kgo.RecordHeader{
			{Key: HeaderReason, Value: []byte(rej.Reason)},
			{Key: HeaderError, Value: []byte(truncate(rej.Detail, 1024))},
			{Key: HeaderSource, Value: []byte(plan.Source.Name)},
			{Key: HeaderSourceTopic, Value: []byte(r.Topic)},
			{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
			{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
		},
	}
	if len(d.Key)+len(d.Value) > MaxDeadLetterBytes {
		half := MaxDeadLetterBytes / 2
		if len(d.Key) > half {
			d.Headers = append(d.Headers, kgo.RecordHeader{Key: HeaderKeyBytes, Value: strconv.AppendInt(nil, int64(len(d.Key)), 10)})
			d.Key = d.Key[:half]
		}
		if len(d.Value) > half {
			d.Headers = append(d.Headers, kgo.RecordHeader{Key: HeaderValueBytes, Value: strconv.AppendInt(nil, int64(len(d.Value)), 10)})
			d.Value = d.Value[:half]
		}
	}
	return d
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
