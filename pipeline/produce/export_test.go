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
