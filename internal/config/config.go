// Package config loads and validates featurepipe's feature file: the YAML
// document that declares the Kafka topics featurepipe owns, the entities
// features are keyed by, the source topics (with their Avro schemas) events
// come from, the versioned feature definitions computed from them, and the
// feature services that bundle features for a model (see Service).
//
// The file is validated completely before anything runs: Load reports every
// problem it finds at once, each with its file, line and field path and what
// would be allowed instead. A *File returned without error is consistent:
// every reference resolves, every schema is loaded, every field a feature reads
// exists with a usable type, and each source's Kafka key identifies exactly
// one entity (Source.Entity); features of other entities fed by the source are
// re-keyed through a repartition topic (see Repartition).
//
// A *File is read-only after Load returns and safe for concurrent use.
package config

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/schemas"
)

// Defaults of the kafka block; each applies when its key is omitted.
const (
	DefaultFeatureLogTopic   = "featurepipe.features"
	DefaultDeadLetterTopic   = "featurepipe.dlq"
	DefaultLookupLogTopic    = "featurepipe.lookups"
	DefaultRegistryTopic     = "featurepipe.registry"
	DefaultGroup             = "featurepipe-workers"
	DefaultRepartitionPrefix = "featurepipe.repartition."
	DefaultPartitions        = 6
	DefaultReplicationFactor = 1
)

// File is a loaded and validated feature file.
type File struct {
	Path     string // as given to Load, LoadFS or Parse
	Kafka    Kafka
	Entities []*Entity
	Sources  []*Source
	Features []*Feature // in file order
	Services []*Service // feature services, in file order; may be empty
	// Monitor are the file-level monitoring thresholds (DefaultMonitor
	// where the top-level monitor block leaves a key out).
	Monitor Monitor
}

// Kafka holds the topics and settings featurepipe itself owns. Every field has
// a default (see the Default constants), so the kafka block may be omitted.
// Its topics are distinct from each other and from every source topic.
type Kafka struct {
	// FeatureLogTopic is the compacted topic of tile upserts that lookup
	// replicas follow. Default "featurepipe.features".
	FeatureLogTopic string
	// DeadLetterTopic receives records that cannot be decoded or are invalid,
	// with the reason in their headers. Default "featurepipe.dlq".
	DeadLetterTopic string
	// LookupLogTopic records served lookups. Default "featurepipe.lookups".
	LookupLogTopic string
	// RegistryTopic is the compacted topic recording every feature
	// version's definition hash and, per partition, whether it is warming
	// up or ready. Default "featurepipe.registry".
	RegistryTopic string
	// Group is the consumer group of the stream workers. Default
	// "featurepipe-workers".
	Group string
	// Partitions is used only when featurepipe creates a topic (1..10000).
	// Default 6.
	Partitions int32
	// ReplicationFactor is used only when featurepipe creates a topic (at
	// least 1). Default 1, which suits a single broker and nothing else.
	ReplicationFactor int16
	// Security is TLS and SASL for every Kafka client (kafka.security; see
	// Security). Default: plaintext, no authentication.
	Security Security
	// SchemaRegistry is the Confluent-compatible schema registry that
	// sources with encoding confluent resolve writer schema ids in. Zero
	// (URL "") when the file has no kafka.schema_registry; required when a
	// source says encoding: confluent.
	SchemaRegistry SchemaRegistry
	// RepartitionPrefix starts the name of every repartition topic (see
	// Repartition). Default "featurepipe.repartition.". Two deployments
	// sharing a Kafka cluster need different prefixes (or source names):
	// a repartition topic has one writer group. Source topics may not start
	// with it.
	RepartitionPrefix string
}

// SchemaRegistry locates a Confluent-compatible schema registry
// (kafka.schema_registry). The password is never in the feature file: it
// is read from the environment variable PasswordEnv when a client starts.
type SchemaRegistry struct {
	// URL is the registry's base URL (http or https), e.g.
	// http://localhost:8081, or http://localhost:8080/apis/ccompat/v7 for
	// Apicurio Registry's Confluent-compatible API.
	URL string
	// Username enables HTTP basic authentication; "" sends none.
	Username string
	// PasswordEnv names the environment variable holding the password; set
	// exactly when Username is.
	PasswordEnv string
	Line        int
}

// Encodings of a source's record values (Source.Encoding).
const (
	// EncodingSingleObject is Avro single-object encoding (C3 01, the
	// writer schema's 8-byte fingerprint, the body): the default. Writer
	// schemas are the source's schema and its writer_schemas.
	EncodingSingleObject = "single-object"
	// EncodingConfluent is Confluent's wire format (0x00, a 4-byte schema
	// id, the body); writer schemas come from kafka.schema_registry.
	EncodingConfluent = "confluent"
)

// Entity is what features are keyed by (a user, a merchant, a (user,
// merchant) pair, ...).
type Entity struct {
	Name string
	// Key is the event field that identifies a single-key entity (`key:`,
	// or `keys:` with one field); "" for a composite entity.
	Key string
	// Keys are the event fields that together identify the entity, in the
	// order written: one for `key:`, two or more for a composite entity
	// (`keys: [user_id, merchant_id]`). Never empty in a loaded File. The
	// entity key string of an event is keys.EntityKey over these fields'
	// values, in this order.
	Keys []string
	Line int
}

// Composite reports whether the entity is identified by several fields.
func (e *Entity) Composite() bool { return len(e.Keys) > 1 }

// KeyList is the key fields as written for messages: "user_id" or
// "[user_id, merchant_id]".
func (e *Entity) KeyList() string {
	if len(e.Keys) == 1 {
		return e.Keys[0]
	}
	return "[" + strings.Join(e.Keys, ", ") + "]"
}

// Source is a Kafka topic of Avro events.
type Source struct {
	Name       string
	Topic      string
	SchemaPath string // as written in the file, relative to the feature file
	EventTime  string // event field holding the event time (Avro long/int, ms)
	Line       int
	Schema     *schemas.Schema // loaded; the reader schema features are checked against
	// Encoding is EncodingSingleObject (the default) or EncodingConfluent.
	Encoding string
	// WriterSchemaPaths are the source's writer_schemas as written: other
	// schemas (older or newer versions of Schema) that single-object
	// records on the topic may be written with; found by fingerprint and
	// read as Schema by Avro's resolution rules. Only for single-object.
	WriterSchemaPaths []string
	// WriterSchemas are WriterSchemaPaths loaded, in the same order.
	WriterSchemas []*schemas.Schema
	// Entity is the entity the Kafka key of the source's records
	// identifies: declared with `entity:` on the source, otherwise the one
	// entity of its features (nil if no feature uses the source and none is
	// declared). Features of this entity are computed in the source's own
	// partitions.
	Entity *Entity
	// EntityDeclared is true when the file names Entity under the source.
	EntityDeclared bool
	// Features are the features fed by this source, in file order.
	Features []*Feature
	// Repartitions are the other entities whose features this source feeds,
	// in order of first use: their events are re-keyed through one
	// repartition topic each.
	Repartitions []*Repartition
}

// RepartitionTopic names the internal topic through which the events of
// source are re-keyed by entity: Kafka.RepartitionPrefix, then
// <source>.<entity> (by default featurepipe.repartition.<source>.<entity>).
func (k *Kafka) RepartitionTopic(source, entity string) string {
	return k.RepartitionPrefix + source + "." + entity
}

// Repartition is one re-keying: the events of Source feed features of
// Entity, which its Kafka key does not identify, so workers produce them to
// Topic keyed by Entity's key (same partitioner as producers, same partition
// count as the source topic) and apply them from there. Topic has delete
// cleanup; it is written and read by workers only.
type Repartition struct {
	Topic    string
	Source   *Source
	Entity   *Entity
	Features []*Feature // the features of Entity fed by Source, in file order
}

// Feature is one version of a feature definition. A definition never changes
// under the same version; Hash identifies the definition so that a changed
// definition under an old version can be detected.
type Feature struct {
	Name        string
	Version     int // >= 1
	Entity      string
	Source      string
	Aggregation aggregations.Kind
	Field       string // empty only for count without a field
	// ValueType is the type of Field in the source's schema, one the
	// aggregation accepts (aggregations.Kind.Accepts): double or float is
	// TypeDouble, int or long TypeLong, boolean TypeBool, string
	// TypeString. TypeDouble (the zero value) for count and derived
	// features. The decoder (pipeline/events) reads the field by it.
	ValueType   aggregations.ValueType
	Window      aggregations.Window
	Owner       string
	Description string
	Tags        []string
	Deprecated  bool
	// ReplacedBy is the version that replaces a deprecated one, as
	// "name@version" (validated: it exists, serves the same entity and is
	// not this version); "" when none is named. Only with Deprecated.
	ReplacedBy string
	// Sunset is the date (UTC midnight) after which a deprecated version may
	// stop being served; zero when none is announced. Only with Deprecated.
	// Metadata: lookups keep working after it (with their warning).
	Sunset time.Time
	// Percentile is the quantile approx_percentile estimates, 0 < p < 1
	// (required there, rejected for other aggregations); 0 for the other
	// aggregations. Part of the definition hash when set. Window carries it
	// too (see aggregations.Window.For).
	Percentile float64
	// K is how many events first_k and last_k keep, 1 <= K <=
	// aggregations.MaxK (required there, rejected for other aggregations);
	// 0 for the other aggregations. Part of the definition hash when set.
	// Window carries it too (see aggregations.Window.WithK).
	K int
	// Bucket is the event field that splits the feature into buckets
	// (`bucket: merchant_category`), "" for an unbucketed feature. A
	// bucketed feature's value is a map from bucket to the aggregation over
	// that bucket's events (see aggregations/bucket.go for the bounds and
	// the fold into "__other__"). The field is a string, long, int or
	// boolean of the source's schema (BucketType); the decoder makes it the
	// event's bucket key (pipeline/events), a null giving "__null__". Part
	// of the definition hash when set. Window carries it too
	// (aggregations.Window.WithBuckets).
	Bucket string
	// BucketType is the type of Bucket in the source's schema (TypeString,
	// TypeLong or TypeBool); TypeDouble (zero) when Bucket is "".
	BucketType aggregations.ValueType
	// MaxBuckets is how many buckets a value keeps, the most populated by
	// event count, before folding the others into "__other__": 1 to
	// aggregations.BucketsMax, default aggregations.DefaultMaxBuckets (100)
	// for a bucketed feature, 0 for an unbucketed one. Part of the
	// definition hash when set.
	MaxBuckets int
	// Default is the value of an empty window. nil means the documented
	// default: null for every aggregation but count, sum and approx_distinct,
	// which give 0 (and do not accept a default).
	Default *float64
	// Where is the feature's filter as written (trimmed), "" when every
	// event of the source counts. Part of the definition hash.
	Where string
	// Filter is Where compiled against the source's schema; nil when Where
	// is "" (then filtering costs nothing).
	Filter *Filter
	// TTL is how old (ms) the newest event of the feature in the window may
	// be at T before the value expires (see Expired); 0: never. Part of the
	// definition hash when set.
	TTL int64
	// Derived is the feature's expression over other features of its
	// entity (see Derivation); nil for a feature aggregated from a source.
	// A derived feature has no Source, SourceRef, Aggregation, Field or
	// Window.
	Derived *Derivation
	// Monitor are the version's monitoring thresholds: its monitor block
	// over the file's. Metadata: not part of the definition hash.
	Monitor Monitor
	Line    int
	// ID is "name@version".
	ID string
	// Hash is the hex SHA-256 of the canonical definition: entity and its
	// key field, source, topic and event_time field, aggregation, field,
	// window size and hop, default, and where, ttl, percentile, k, bucket
	// and max_buckets (when set); for a derived feature, entity, expression and input versions.
	// Owner, description, tags and deprecated are metadata and do not
	// change it.
	Hash      string
	SourceRef *Source
	EntityRef *Entity
	// Repartition is the re-keying this feature's events go through, nil
	// when its entity is the one its source's Kafka key identifies.
	Repartition *Repartition
}

// Source returns the source with the given name.
func (f *File) Source(name string) (*Source, bool) {
	for _, s := range f.Sources {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// SourceByTopic returns the source reading the given topic. Topics are unique
// among sources, so there is at most one.
func (f *File) SourceByTopic(topic string) (*Source, bool) {
	for _, s := range f.Sources {
		if s.Topic == topic {
			return s, true
		}
	}
	return nil, false
}

// Entity returns the entity with the given name.
func (f *File) Entity(name string) (*Entity, bool) {
	for _, e := range f.Entities {
		if e.Name == name {
			return e, true
		}
	}
	return nil, false
}

// Feature resolves a feature reference. "name" resolves to the newest version
// of name that is not deprecated, or the newest version if all are
// deprecated; "name@N" resolves to exactly version N. An unresolvable
// reference returns an error wrapping ErrUnknownFeature whose message lists
// close names or the defined versions.
func (f *File) Feature(ref string) (*Feature, error) {
	name, verText, exact := strings.Cut(ref, "@")
	version := 0
	if exact {
		v, err := strconv.Atoi(verText)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%w %q: version after @ must be a positive integer, as in %s@1", ErrUnknownFeature, ref, name)
		}
		version = v
	}
	var best *Feature
	var versions []int
	for _, ft := range f.Features {
		if ft.Name != name {
			continue
		}
		versions = append(versions, ft.Version)
		switch {
		case exact:
			if ft.Version == version {
				return ft, nil
			}
		case best == nil,
			best.Deprecated && !ft.Deprecated,
			best.Deprecated == ft.Deprecated && ft.Version > best.Version:
			best = ft
		}
	}
	if best != nil {
		return best, nil
	}
	if len(versions) > 0 {
		slices.Sort(versions)
		vs := make([]string, len(versions))
		for i, v := range versions {
			vs[i] = strconv.Itoa(v)
		}
		return nil, fmt.Errorf("%w %q: %s has versions %s", ErrUnknownFeature, ref, name, strings.Join(vs, ", "))
	}
	return nil, fmt.Errorf("%w %q; %s", ErrUnknownFeature, ref, f.suggest(name))
}

// suggest lists the feature names close to name, or all names if none is.
func (f *File) suggest(name string) string {
	var names []string
	for _, ft := range f.Features {
		if !slices.Contains(names, ft.Name) {
			names = append(names, ft.Name)
		}
	}
	close := closeNames(name, names, 3)
	if len(close) > 0 {
		return "did you mean " + quoteList(close, " or ") + "?"
	}
	sort.Strings(names)
	const max = 10
	if len(names) > max {
		return "defined features include " + strings.Join(names[:max], ", ") + ", ..."
	}
	return "defined features: " + strings.Join(names, ", ")
}

// EntityFeatures returns every feature (all versions) of the named entity, in
// file order.
func (f *File) EntityFeatures(entity string) []*Feature {
	var out []*Feature
	for _, ft := range f.Features {
		if ft.Entity == entity {
			out = append(out, ft)
		}
	}
	return out
}

// Repartitions returns every re-keying of the file, by source then entity
// in order of first use.
func (f *File) Repartitions() []*Repartition {
	var out []*Repartition
	for _, s := range f.Sources {
		out = append(out, s.Repartitions...)
	}
	return out
}

// Topics returns the source topics, deduplicated and sorted. It does not
// include featurepipe's own topics (see Kafka and Repartitions).
func (f *File) Topics() []string {
	out := make([]string, 0, len(f.Sources))
	for _, s := range f.Sources {
		out = append(out, s.Topic)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// closeNames returns up to limit candidates within a small edit distance of
// name (or sharing a prefix/containment with it), closest first.
func closeNames(name string, candidates []string, limit int) []string {
	type scored struct {
		s string
		d int
	}
	maxDist := max(2, len(name)/3)
	var hits []scored
	for _, c := range candidates {
		d := levenshtein(name, c)
		if d > maxDist && (len(name) < 3 || !strings.Contains(c, name) && !strings.Contains(name, c)) {
			continue
		}
		hits = append(hits, scored{c, d})
	}
	sort.SliceStable(hits, func(i, j int) bool {
		if hits[i].d != hits[j].d {
			return hits[i].d < hits[j].d
		}
		return hits[i].s < hits[j].s
	})
	var out []string
	for i := 0; i < len(hits) && i < limit; i++ {
		out = append(out, hits[i].s)
	}
	return out
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func quoteList(items []string, lastSep string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	if len(q) <= 1 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + lastSep + q[len(q)-1]
}
