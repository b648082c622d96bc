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
// exists with a usable type, and each source feeds exactly one entity.
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
}

// Entity is what features are keyed by (a user, a merchant, ...).
type Entity struct {
	Name string
	Key  string // name of the event field that identifies the entity
	Line int
}

// Source is a Kafka topic of Avro events.
type Source struct {
	Name       string
	Topic      string
	SchemaPath string // as written in the file, relative to the feature file
	EventTime  string // event field holding the event time (Avro long/int, ms)
	Line       int
	Schema     *schemas.Schema // loaded
	// Entity is the entity of the features this source feeds, nil if no
	// feature uses the source. It is unique: the Kafka key of a source's
	// records is its entity's key, so one source feeds one entity.
	Entity *Entity
	// Features are the features fed by this source, in file order.
	Features []*Feature
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
	Line   int
	// ID is "name@version".
	ID string
	// Hash is the hex SHA-256 of the canonical definition: entity and its
	// key field, source, topic and event_time field, aggregation, field,
	// window size and hop, default, where and percentile (when set). Owner, description, tags and
	// deprecated are metadata and do not change it.
	Hash      string
	SourceRef *Source
	EntityRef *Entity
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

// Topics returns the source topics, deduplicated and sorted. It does not
// include featurepipe's own topics (see Kafka).
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
