package keys

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/featurepipe/featurepipe/internal/jsonenc"
)

// EntityKey is THE one key-building function: the entity key string of an
// event, a lookup or a spine row, from the values of its entity's key
// fields (config.Entity.Keys) in their declared order. The worker (source
// and repartition records), the producer, the lookup service and backfill
// all build keys with it, so they agree byte for byte.
//
// A single-key entity's key is its value unchanged (every key written before
// composite keys existed). A composite key is the JSON array of its values
// as strings, e.g. ["u1","m9"]: readable in logs, lookup logs and skew
// reports, and unambiguous, since every value is quoted (values are valid
// UTF-8 strings as Avro requires; invalid bytes are written as U+FFFD, like
// encoding/json). Integer key fields take their decimal text, as for single
// keys. Cost: none for a single key, one allocation for a composite key
// (more only when values need JSON escapes).
func EntityKey(values []string) string {
	if len(values) == 1 {
		return values[0]
	}
	n := 2 + len(values) // brackets and commas, roughly
	for _, v := range values {
		n += len(v) + 2 // quotes
	}
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteByte('[')
	var tmp [128]byte // quoting scratch, on the stack for values that fit
	for i, v := range values {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.Write(jsonenc.AppendString(tmp[:0], v))
	}
	sb.WriteByte(']')
	return sb.String()
}

// AppendEntityKey appends EntityKey(values) to dst (the same bytes).
func AppendEntityKey(dst []byte, values []string) []byte {
	if len(values) == 1 {
		return append(dst, values[0]...)
	}
	dst = append(dst, '[')
	for i, v := range values {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonenc.AppendString(dst, v)
	}
	return append(dst, ']')
}

// SplitEntityKey returns the n key field values an EntityKey was built
// from (n is len(config.Entity.Keys)).
func SplitEntityKey(key string, n int) ([]string, error) {
	if n == 1 {
		return []string{key}, nil
	}
	var vs []string
	if err := json.Unmarshal([]byte(key), &vs); err != nil || len(vs) != n {
		return nil, fmt.Errorf("%w: %q is not a composite entity key of %d fields", ErrMalformed, key, n)
	}
	return vs, nil
}
