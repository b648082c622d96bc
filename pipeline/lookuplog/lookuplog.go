// Package lookuplog defines the record the lookup service writes to the
// lookup-log topic for every answered (sampled) lookup, and that
// `featurepipe skew` replays as a spine through the backfill engine: what
// was served, for which key, as of which time.
package lookuplog

import (
	"encoding/json"
	"fmt"
)

// Entry is one served key. Key of the Kafka record: the entity key. Value:
// the JSON encoding of Entry.
type Entry struct {
	Entity string `json:"entity"`
	Key    string `json:"key"`
	// At is the time the values are as of (the request time), epoch ms.
	At int64 `json:"at"`
	// Consumer is who asked: the consumer of the API token the request
	// carried; empty on an open service (no tokens).
	Consumer string `json:"consumer,omitempty"`
	// Features maps feature id (name@version) to the value served; null for
	// an empty window served as null.
	Features map[string]*float64 `json:"features"`
}

// Encode returns the record value of e.
func (e *Entry) Encode() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode lookup log entry: %w", err)
	}
	return b, nil
}

// Decode parses a record value written by Encode.
func Decode(b []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("decode lookup log entry: %w", err)
	}
	if e.Entity == "" || e.At == 0 {
		return nil, fmt.Errorf("decode lookup log entry: missing entity or time")
	}
	return &e, nil
}
