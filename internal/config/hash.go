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
// that changes the value computed for an entity (entity and its key fields,
// source, topic and event_time field, aggregation, field, window size and
// hop, default, and where, ttl and percentile when set; for a derived feature: entity,
// expression and the input versions) and nothing else. Owner, description, tags and deprecated are
// metadata that may change under the same version. The name and version are
// left out too, so the same definition under two versions hashes the same.
// f must be fully linked (SourceRef and EntityRef set).
func definitionHash(f *Feature) string {
	var b strings.Builder
	b.WriteString("format=" + strconv.Quote(hashFormat) + "\n")
	for _, kv := range f.Definition() {
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(strconv.Quote(kv[1]))
		b.WriteByte('\n')
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

// Definition returns the fields that define what f computes, as ordered
// (name, value) pairs: what Hash covers, and what a registry shows when a
// definition changed under the same version. f must be fully linked.
func (f *Feature) Definition() [][2]string {
	var out [][2]string
	if f.Derived != nil {
		return f.derivedDefinition()
	}
	put := func(key, value string) { out = append(out, [2]string{key, value}) }
	put("entity", f.Entity)
	// The key fields, comma-separated: one field for a single-key entity
	// (the spelling of every hash before composite keys existed).
	put("entity_key", strings.Join(f.EntityRef.Keys, ","))
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
	if f.Percentile != 0 {
		// Only when set (approx_percentile), so the hashes of the other
		// features are unchanged.
		put("percentile", strconv.FormatFloat(f.Percentile, 'g', -1, 64))
	}
	if f.K != 0 { // only when set (first_k, last_k), like percentile
		put("k", strconv.Itoa(f.K))
	}
	if f.Where != "" {
		// Only when set, so the hashes of features without a where (all
		// of them before where existed) are unchanged.
		put("where", f.Where)
	}
	if f.TTL > 0 { // likewise only when set
		put("ttl_ms", strconv.FormatInt(f.TTL, 10))
	}
	if f.Bucket != "" { // likewise only when set
		put("bucket", f.Bucket)
		put("max_buckets", strconv.Itoa(f.MaxBuckets))
	}
	return out
}
