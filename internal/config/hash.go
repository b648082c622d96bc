package config

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// hashFormat versions the canonical form below; bump it only together with a
// migration, since every stored feature version is keyed by its hash.
const hashFormat = "featurepipe.feature.v1"

// definitionHash is the hex SHA-256 of f's canonical definition: everything
// that changes the value computed for an entity (entity and its key field,
// source, topic and event_time field, aggregation, field, window size and
// hop, default) and nothing else. Owner, description, tags and deprecated are
// metadata that may change under the same version. The name and version are
// left out too, so the same definition under two versions hashes the same.
// f must be fully linked (SourceRef and EntityRef set).
func definitionHash(f *Feature) string {
	var b strings.Builder
	put := func(key, value string) {
		b.WriteString(key)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(value))
		b.WriteByte('\n')
	}
	put("format", hashFormat)
	put("entity", f.Entity)
	put("entity_key", f.EntityRef.Key)
	put("source", f.Source)
	put("topic", f.SourceRef.Topic)
	put("event_time", f.SourceRef.EventTime)
	put("aggregation", f.Aggregation.String())
	put("field", f.Field)
	put("window_size_ms", strconv.FormatInt(f.Window.Size, 10))
	put("window_hop_ms", strconv.FormatInt(f.Window.Hop, 10))
	def := "null"
	if f.Default != nil {
		v := *f.Default
		if v == 0 {
			v = 0 // one spelling for -0 and 0
		}
		def = strconv.FormatFloat(v, 'g', -1, 64)
	}
	put("default", def)
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}
