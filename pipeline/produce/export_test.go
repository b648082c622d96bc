package produce

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// FromFlatJSON exposes the direct JSON-to-Avro path of FromJSON: ok false
// when it declines the line.
func FromFlatJSON(e *Encoder, line []byte) (*kgo.Record, bool, error) {
	if !e.flat {
		return nil, false, nil
	}
	return e.fromFlatJSON(line, time.Now().UnixMilli())
}

// FromJSONAt and RecordAt are FromJSON and Record with the clock given, so
// that a test can compare the two paths' errors, which name "now".
func FromJSONAt(e *Encoder, line []byte, now int64) (*kgo.Record, error) {
	return e.fromJSONAt(line, now)
}

func RecordAt(e *Encoder, native map[string]any, now int64) (*kgo.Record, error) {
	return e.recordAt(native, now)
}
