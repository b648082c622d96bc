package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/schemas"
)

var (
	namePattern  = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	topicPattern = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)
)

// maxTopicLen is Kafka's limit on topic name length.
const maxTopicLen = 249

// schemaLoader loads the schema at a path as written in the feature file. It
// returns the resolved path as the user would recognise it, for messages.
type schemaLoader func(rel string) (resolved string, s *schemas.Schema, err error)

// build runs the semantic checks over what decodeFile read and links the
// result. It returns nil if any problem was recorded, in decoding or here.
func (d *decoder) build(path string, load schemaLoader) *File {
	f := &File{Path: path, Monitor: d.monitor}
	own := d.buildKafka(&f.Kafka)
	d.buildSchemaRegistry(&f.Kafka)
	ents := d.buildEntities(f)
	srcs := d.buildSources(f, own, load, ents)
	d.buildFeatures(f, ents, srcs)
	d.buildDerived(f)
	d.buildServices(f)
	if len(d.errs) > 0 {
		return nil
	}
	for _, ft := range f.Features {
		ft.ID = ft.Name + "@" + strconv.Itoa(ft.Version)
	}
	for _, ft := range f.Features { // inputs' IDs first: a derived feature's hash names them
		ft.Hash = definitionHash(ft)
		src := ft.SourceRef
		if src == nil { // a derived feature: no source
			continue
		}
		src.Features = append(src.Features, ft)
		if ft.EntityRef == src.Entity {
			continue
		}
		i := slices.IndexFunc(src.Repartitions, func(r *Repartition) bool { return r.Entity == ft.EntityRef })
		if i < 0 {
			i = len(src.Repartitions)
			src.Repartitions = append(src.Repartitions, &Repartition{Topic: f.Kafka.RepartitionTopic(src.Name, ft.Entity), Source: src, Entity: ft.EntityRef})
		}
		ft.Repartition = src.Repartitions[i]
		ft.Repartition.Features = append(ft.Repartition.Features, ft)
	}
	return f
}

// buildKafka applies defaults and checks the kafka block. It returns
// featurepipe's own topics, mapped to the key that names each.
func (d *decoder) buildKafka(k *Kafka) map[string]string {
	*k = Kafka{
		FeatureLogTopic:   DefaultFeatureLogTopic,
		DeadLetterTopic:   DefaultDeadLetterTopic,
		LookupLogTopic:    DefaultLookupLogTopic,
		RegistryTopic:     DefaultRegistryTopic,
		Group:             DefaultGroup,
		RepartitionPrefix: DefaultRepartitionPrefix,
		Partitions:        DefaultPartitions,
		ReplicationFactor: DefaultReplicationFactor,
	}
	m := d.kafka
	type topicKey struct {
		key  string
		dst  *string
		what string
	}
	topics := []topicKey{
		{"feature_log_topic", &k.FeatureLogTopic, "the compacted topic featurepipe publishes feature tiles to"},
		{"dead_letter_topic", &k.DeadLetterTopic, "the topic undecodable or invalid records go to"},
		{"lookup_log_topic", &k.LookupLogTopic, "the topic served lookups are logged to"},
		{"registry_topic", &k.RegistryTopic, "the compacted topic of feature version definitions and status"},
	}
	set := make([]bool, len(topics))
	for i, t := range topics {
		if m.get(t.key) == nil {
			continue
		}
		if v := d.str(m, t.key, true, t.what); v != "" && d.checkTopic(m.lineOf(t.key), m.field(t.key), v) {
			*t.dst, set[i] = v, true
		}
	}
	own := make(map[string]string, len(topics))
	for i, t := range topics {
		j := slices.IndexFunc(topics[:i], func(p topicKey) bool { return *p.dst == *t.dst })
		if j < 0 {
			own[*t.dst] = "kafka." + t.key
			continue
		}
		// Report on a key the user wrote; two defaults never collide.
		at, other := t.key, "kafka."+topics[j].key
		if !set[i] {
			at, other = topics[j].key, "the default of kafka."+t.key
		}
		d.addf(m.lineOf(at), m.field(at), "topic %q is also %s; featurepipe's topics must be distinct", *t.dst, other)
	}
	if m.get("group") != nil {
		if v := d.str(m, "group", true, "the consumer group of the stream workers"); v != "" {
			k.Group = v
		}
	}
	if m.get("repartition_prefix") != nil {
		const what = "the start of the repartition topics' names, e.g. featurepipe.repartition."
		if v := d.str(m, "repartition_prefix", true, what); v != "" && d.checkTopic(m.lineOf("repartition_prefix"), m.field("repartition_prefix"), v+"x") {
			k.RepartitionPrefix = v
		}
	}
	if v, _, ok := d.integer(m, "partitions"); ok {
		if v < 1 || v > 10000 {
			d.addf(m.lineOf("partitions"), m.field("partitions"), "must be between 1 and 10000; got %d", v)
		} else {
			k.Partitions = int32(v)
		}
	}
	if v, _, ok := d.integer(m, "replication_factor"); ok {
		if v < 1 || v > 32767 {
			d.addf(m.lineOf("replication_factor"), m.field("replication_factor"), "must be at least 1 (and at most the number of brokers); got %d", v)
		} else {
			k.ReplicationFactor = int16(v)
		}
	}
	d.decodeSecurity(m, &k.Security)
	return own
}

func (d *decoder) checkTopic(line int, field, topic string) bool {
	if len(topic) > maxTopicLen || topic == "." || topic == ".." || !topicPattern.MatchString(topic) {
		d.addf(line, field, "invalid Kafka topic name %q; allowed: letters, digits, '.', '_' and '-', at most %d characters, not \".\" or \"..\"", topic, maxTopicLen)
		return false
	}
	return true
}

func (d *decoder) checkName(m mapping, kind, name string) bool {
	if name == "" {
		return false // already reported as missing
	}
	if !namePattern.MatchString(name) {
		d.addf(m.lineOf("name"), m.field("name"), "invalid %s name %q; a name is a lower-case letter followed by lower-case letters, digits or _ (^[a-z][a-z0-9_]*$)", kind, name)
		return false
	}
	return true
}

func (d *decoder) buildEntities(f *File) map[string]*Entity {
	byName := make(map[string]*Entity, len(d.entities))
	for _, it := range d.entities {
		f.Entities = append(f.Entities, it.e)
		if !d.checkName(it.m, "entity", it.e.Name) {
			continue
		}
		if first, dup := byName[it.e.Name]; dup {
			d.addf(it.m.lineOf("name"), it.m.field("name"), "entity %q is already defined at line %d; entity names are unique", it.e.Name, first.Line)
			continue
		}
		byName[it.e.Name] = it.e
	}
	return byName
}

func (d *decoder) buildSources(f *File, own map[string]string, load schemaLoader, ents map[string]*Entity) map[string]*Source {
	type loaded struct {
		resolved string
		s        *schemas.Schema
		err      error
	}
	cache := make(map[string]loaded)
	byName := make(map[string]*Source, len(d.sources))
	byTopic := make(map[string]*Source, len(d.sources))
	for _, it := range d.sources {
		s, m := it.s, it.m
		f.Sources = append(f.Sources, s)
		if d.checkName(m, "source", s.Name) {
			if first, dup := byName[s.Name]; dup {
				d.addf(m.lineOf("name"), m.field("name"), "source %q is already defined at line %d; source names are unique", s.Name, first.Line)
			} else {
				byName[s.Name] = s
			}
		}
		if s.Topic != "" && d.checkTopic(m.lineOf("topic"), m.field("topic"), s.Topic) {
			if key, clash := own[s.Topic]; clash {
				d.addf(m.lineOf("topic"), m.field("topic"), "topic %q is featurepipe's own topic (%s); a source must read a topic of its own", s.Topic, key)
			} else if strings.HasPrefix(s.Topic, f.Kafka.RepartitionPrefix) {
				d.addf(m.lineOf("topic"), m.field("topic"), "topic %q starts with %q, reserved for featurepipe's repartition topics (kafka.repartition_prefix); a source must read a topic of its own", s.Topic, f.Kafka.RepartitionPrefix)
			} else if first, dup := byTopic[s.Topic]; dup {
				d.addf(m.lineOf("topic"), m.field("topic"), "topic %q is already read by source %q (line %d); a topic has one schema and one key, so it belongs to one source", s.Topic, first.Name, first.Line)
			} else {
				byTopic[s.Topic] = s
			}
		}
		if it.entity != "" {
			if s.Entity = ents[it.entity]; s.Entity == nil {
				d.addf(m.lineOf("entity"), m.field("entity"), "unknown entity %q; %s", it.entity, known("entities", it.entity, keys(ents)))
			} else {
				s.EntityDeclared = true
			}
		}
		loadCached := func(p string) (string, *schemas.Schema, error) {
			l, ok := cache[p]
			if !ok {
				l.resolved, l.s, l.err = load(p)
				cache[p] = l
			}
			return l.resolved, l.s, l.err
		}
		d.buildEncoding(f, it, loadCached)
		if s.SchemaPath == "" {
			continue
		}
		l, ok := cache[s.SchemaPath]
		if !ok {
			l.resolved, l.s, l.err = load(s.SchemaPath)
			cache[s.SchemaPath] = l
		}
		if l.err != nil {
			d.addf(m.lineOf("schema"), m.field("schema"), "cannot load schema %s (resolved relative to the feature file): %v", l.resolved, l.err)
			continue
		}
		s.Schema = l.s
		if s.EventTime == "" {
			continue
		}
		switch fld, ok := s.Schema.Field(s.EventTime); {
		case !ok:
			d.addf(m.lineOf("event_time"), m.field("event_time"), "field %q is not in schema %s (%s); fields: %s", s.EventTime, s.Schema.Name, s.SchemaPath, fieldNames(s.Schema, nil))
		case fld.Type != "long" && fld.Type != "int":
			d.addf(m.lineOf("event_time"), m.field("event_time"), "field %q is %s; event_time must be an Avro long or int of milliseconds since the epoch (timestamp-millis); candidates: %s", s.EventTime, typeName(fld), fieldNames(s.Schema, isEventTime))
		}
		if s.EntityDeclared {
			d.checkKeyFields(m, "entity", s, s.Entity)
		}
	}
	return byName
}

func (d *decoder) buildFeatures(f *File, ents map[string]*Entity, srcs map[string]*Source) {
	type firstUse struct {
		f    *Feature
		path string
	}
	ids := make(map[string]*Feature, len(d.features))
	envs := make(filterEnvs)
	sourceEntity := make(map[*Source]firstUse)
	checkedKeys := make(map[[2]any]bool) // (source, entity) pairs whose key fields were checked
	for _, it := range d.features {
		ft, m := it.f, it.m
		f.Features = append(f.Features, ft)
		if d.checkName(m, "feature", ft.Name) && ft.Version > 0 {
			id := ft.Name + "@" + strconv.Itoa(ft.Version)
			if first, dup := ids[id]; dup {
				d.addf(m.lineOf("version"), m.field("version"), "feature %s is already defined at line %d; a changed definition needs a new version", id, first.Line)
			} else {
				ids[id] = ft
			}
		}
		if ft.Entity != "" {
			if ft.EntityRef = ents[ft.Entity]; ft.EntityRef == nil {
				d.addf(m.lineOf("entity"), m.field("entity"), "unknown entity %q; %s", ft.Entity, known("entities", ft.Entity, keys(ents)))
			}
		}
		if ft.Source != "" {
			if ft.SourceRef = srcs[ft.Source]; ft.SourceRef == nil {
				d.addf(m.lineOf("source"), m.field("source"), "unknown source %q; %s", ft.Source, known("sources", ft.Source, keys(srcs)))
			}
		}
		kindOK := false
		if it.aggregation != "" {
			k, err := aggregations.ParseKind(it.aggregation)
			if err != nil {
				d.addf(m.lineOf("aggregation"), m.field("aggregation"), "unknown aggregation %q; allowed: %s", it.aggregation, strings.Join(aggregations.KindNames(), ", "))
			} else {
				ft.Aggregation, kindOK = k, true
			}
		}
		if kindOK {
			d.checkField(it, ft.SourceRef)
			if ft.Default != nil && ft.Aggregation.EmptyIsZero() {
				d.addf(m.lineOf("default"), m.field("default"), "%s of an empty window is always 0; default applies only to the aggregations whose empty window is null (%s)", ft.Aggregation, strings.Join(nullWhenEmpty(), ", "))
			} else if ft.Default != nil && ft.OutputType() == aggregations.TypeString {
				d.addf(m.lineOf("default"), m.field("default"), "default is a number and %s of string field %q is a string: a string feature's empty window is null; remove default", ft.Aggregation, ft.Field)
			}
			d.checkPercentile(it)
			d.checkK(it)
		}
		d.checkBucket(it, ft.SourceRef)
		if it.window != "" {
			if w, err := aggregations.ParseWindow(it.window, it.hop); err != nil {
				// Report on the setting to change, without the package prefix
				// our own "<file>:<line>: <field>:" replaces.
				key, msg := "window", err.Error()
				var we *aggregations.WindowError
				if errors.As(err, &we) {
					key, msg = we.Part, we.Msg
				}
				d.addf(m.lineOf(key), m.field(key), "%s", msg)
			} else {
				// The window carries the sketch the kind's tiles keep (none for
				// the exact kinds); an invalid kind was reported above.
				ft.Window = w.For(ft.Aggregation, ft.Percentile).WithK(ft.K)
				if ft.OutputType() == aggregations.TypeString {
					// last, first, first_k, last_k of a string field: the
					// tiles keep the strings (checkField set ValueType).
					ft.Window = ft.Window.WithStrings()
				}
				if ft.Bucket != "" {
					ft.Window = ft.Window.WithBuckets()
				}
			}
		}
		d.checkWhere(it, envs)
		d.checkTTL(it)
		d.checkDerivedShape(it)
		if it.sunset != "" {
			if t, err := time.Parse(time.DateOnly, strings.TrimSpace(it.sunset)); err != nil {
				d.addf(m.lineOf("sunset"), m.field("sunset"), "%q is not a date: write YYYY-MM-DD, e.g. 2027-01-31", it.sunset)
			} else {
				ft.Sunset = t
			}
		}
		src, ent := ft.SourceRef, ft.EntityRef
		if src == nil || ent == nil {
			continue
		}
		pair := [2]any{src, ent}
		if !checkedKeys[pair] {
			checkedKeys[pair] = true
			d.checkKeyFields(m, "entity", src, ent)
		}
		if src.EntityDeclared {
			if ent != src.Entity && len(ent.Keys) > 0 {
				d.checkRepartitionTopic(m, f.Kafka.RepartitionTopic(src.Name, ent.Name))
			}
			continue
		}
		first, used := sourceEntity[src]
		switch {
		case !used:
			sourceEntity[src] = firstUse{ft, m.path}
			src.Entity = ent
		case first.f.EntityRef != ent:
			d.addf(m.lineOf("entity"), m.field("entity"),
				"source %q already feeds entity %q (%s, line %d); the Kafka key of a source's records is its entity's key, so a source that feeds several entities must say which one its Kafka key identifies: add `entity: %s` to source %q (line %d), and the events of %q features are then re-keyed by %s through the internal topic %s",
				src.Name, first.f.Entity, first.path, first.f.Line, first.f.Entity, src.Name, src.Line, ent.Name, ent.KeyList(), f.Kafka.RepartitionTopic(src.Name, ent.Name))
		}
	}
	d.checkDeprecations(ids)
}

// checkDeprecations checks replaced_by and sunset once every feature
// version is known (ids: id -> version): they belong to a deprecated
// version, and the replacement is another existing version, pinned as
// name@version, of the same entity.
func (d *decoder) checkDeprecations(ids map[string]*Feature) {
	for _, it := range d.features {
		ft, m := it.f, it.m
		if !ft.Deprecated {
			for _, key := range []string{"replaced_by", "sunset"} {
				if m.get(key) != nil {
					d.addf(m.lineOf(key), m.field(key), "applies to a deprecated version only: add deprecated: true, or remove %s", key)
				}
			}
			continue
		}
		if ft.ReplacedBy == "" {
			continue
		}
		ref := strings.TrimSpace(ft.ReplacedBy)
		name, ver, pinned := strings.Cut(ref, "@")
		n, err := strconv.Atoi(ver)
		if !pinned || err != nil || n < 1 {
			d.addf(m.lineOf("replaced_by"), m.field("replaced_by"), "%q: name the replacement with its version, as name@version (e.g. %s@%d)", ref, ft.Name, ft.Version+1)
			continue
		}
		id := name + "@" + strconv.Itoa(n)
		repl := ids[id]
		switch {
		case repl == nil:
			var versions []string
			for _, other := range d.features {
				if other.f.Name == name {
					versions = append(versions, other.f.Name+"@"+strconv.Itoa(other.f.Version))
				}
			}
			hint := "define it in this file first"
			if len(versions) > 0 {
				hint = "versions of " + name + ": " + strings.Join(versions, ", ")
			}
			d.addf(m.lineOf("replaced_by"), m.field("replaced_by"), "replacement %s is not defined; %s", id, hint)
		case repl == ft:
			d.addf(m.lineOf("replaced_by"), m.field("replaced_by"), "a version cannot replace itself; name the version to move to")
		case ft.Entity != "" && repl.Entity != ft.Entity:
			d.addf(m.lineOf("replaced_by"), m.field("replaced_by"), "replacement %s belongs to entity %s, not %s: a replacement must be looked up with the same keys", id, repl.Entity, ft.Entity)
		default:
			ft.ReplacedBy = id
		}
	}
}

// checkPercentile checks percentile against the aggregation: required by
// approx_percentile, strictly between 0 and 1, and rejected elsewhere. It sets
// ft.Percentile when valid.
func (d *decoder) checkPercentile(it featureItem) {
	ft, m := it.f, it.m
	k := ft.Aggregation
	switch p := it.percentile; {
	case p == nil && k.NeedsPercentile() && m.get("percentile") == nil: // (a present non-number was reported)
		d.addf(m.lineOf("aggregation"), m.field("percentile"), "required for aggregation %s: the quantile to estimate, between 0 and 1 (e.g. percentile: 0.95 for the 95th percentile)", k)
	case p == nil:
	case !k.NeedsPercentile():
		d.addf(m.lineOf("percentile"), m.field("percentile"), "applies only to aggregation approx_percentile, not %s; remove percentile", k)
	case !(*p > 0 && *p < 1):
		d.addf(m.lineOf("percentile"), m.field("percentile"), "%v is not between 0 and 1 (exclusive); write the quantile as a fraction, e.g. 0.95 for the 95th percentile", *p)
	default:
		ft.Percentile = *p
	}
}

// checkK checks k against the aggregation: required by first_k, last_k and
// top_k, a whole number from 1 to aggregations.MaxK, and rejected
// elsewhere; a list aggregation (first_k, last_k, top_k) takes no default
// (its empty window is null). It sets ft.K when valid.
func (d *decoder) checkK(it featureItem) {
	ft, m := it.f, it.m
	k := ft.Aggregation
	what := "how many events to keep"
	if k == aggregations.TopK {
		what = "how many of the most frequent values to give"
	}
	switch {
	case !it.kPresent && k.NeedsK() && m.get("k") == nil:
		d.addf(m.lineOf("aggregation"), m.field("k"), "required for aggregation %s: %s, from 1 to %d (e.g. k: 10)", k, what, aggregations.MaxK)
	case !it.kPresent || !it.kOK: // absent, or a non-integer (reported)
	case !k.NeedsK():
		d.addf(m.lineOf("k"), m.field("k"), "applies only to aggregations first_k, last_k and top_k, not %s; remove k", k)
	case (it.k < 1 || it.k > aggregations.MaxK) && k == aggregations.TopK:
		d.addf(m.lineOf("k"), m.field("k"), "%d is out of range: give from 1 to %d values", it.k, aggregations.MaxK)
	case it.k < 1 || it.k > aggregations.MaxK:
		d.addf(m.lineOf("k"), m.field("k"), "%d is out of range: keep from 1 to %d events", it.k, aggregations.MaxK)
	default:
		ft.K = int(it.k)
	}
	if (k.List() || k == aggregations.TopK) && m.get("default") != nil {
		d.addf(m.lineOf("default"), m.field("default"), "%s is a list, null for an empty window; a number default does not apply to it; remove default", k)
	}
}

// nullWhenEmpty lists the aggregations whose empty window is null: those a
// default applies to.
func nullWhenEmpty() []string {
	var names []string
	for _, k := range aggregations.Kinds() {
		if !k.EmptyIsZero() && !k.List() && k != aggregations.TopK {
			names = append(names, k.String())
		}
	}
	return names
}

// checkField checks the feature's field against its aggregation and, when
// the source's schema is loaded, against the schema.
func (d *decoder) checkField(it featureItem, src *Source) {
	ft, m := it.f, it.m
	k := ft.Aggregation
	if ft.Field == "" {
		if k.NeedsField() {
			d.addf(m.lineOf("field"), m.field("field"), "required for aggregation %s: the numeric event field to aggregate", k)
		}
		return
	}
	if src == nil || src.Schema == nil {
		return // reported at the source reference or the schema
	}
	fld, ok := src.Schema.Field(ft.Field)
	if !ok {
		list := "fields: " + fieldNames(src.Schema, nil)
		if k.NeedsField() {
			list = "numeric fields: " + fieldNames(src.Schema, isNumeric)
		}
		d.addf(m.lineOf("field"), m.field("field"), "field %q is not in schema %s of source %q; %s", ft.Field, src.Schema.Name, src.Name, list)
		return
	}
	if !k.NeedsField() {
		return
	}
	vt, typed := valueType(fld)
	switch {
	case typed && k.Accepts(vt):
		ft.ValueType = vt
	case fld.Type == "array":
		d.addf(m.lineOf("field"), m.field("field"), "field %q is %s: list values are not supported as a feature's field yet; aggregate a double, float, int, long, boolean or string field", ft.Field, typeName(fld))
	case typed: // a boolean or a string for an aggregation that takes numbers only
		d.addf(m.lineOf("field"), m.field("field"), "field %q is %s; aggregation %s needs a numeric field (double, float, int or long); numeric fields: %s; aggregations of %s fields: %s", ft.Field, typeName(fld), k, fieldNames(src.Schema, isNumeric), vt, aggregations.KindsAccepting(vt))
	default:
		d.addf(m.lineOf("field"), m.field("field"), "field %q is %s; aggregation %s needs a numeric field (double, float, int or long); numeric fields: %s", ft.Field, typeName(fld), k, fieldNames(src.Schema, isNumeric))
	}
}

// valueType is the aggregations.ValueType of a field's Avro type; false for
// the types no aggregation takes (bytes, enum, array, map, record, union of
// several types, ...).
func valueType(f schemas.Field) (aggregations.ValueType, bool) {
	switch f.Type {
	case "double", "float":
		return aggregations.TypeDouble, true
	case "int", "long":
		return aggregations.TypeLong, true
	case "boolean":
		return aggregations.TypeBool, true
	case "string":
		return aggregations.TypeString, true
	}
	return 0, false
}

// checkWhere type-checks and compiles the feature's where against its
// source's schema, setting Where and Filter.
func (d *decoder) checkWhere(it featureItem, envs filterEnvs) {
	ft, m := it.f, it.m
	expr := strings.TrimSpace(it.where)
	if n := m.get("where"); n == nil || n.Kind != yaml.ScalarNode {
		return // absent, or its type already reported
	}
	if expr == "" {
		d.addf(m.lineOf("where"), m.field("where"), "is empty; write a boolean expression over the source's fields, e.g. \"amount > 100.0\", or remove where")
		return
	}
	ft.Where = expr
	src := ft.SourceRef
	if src == nil || src.Schema == nil {
		return // reported at the source reference or the schema
	}
	flt, err := envs.compileWhere(src.Schema, expr)
	if err != nil {
		d.addf(m.lineOf("where"), m.field("where"), "%v", err)
		return
	}
	ft.Filter = flt
}

// checkKeyFields checks that every key field of ent is a usable field of
// src's schema, blaming m's key.
func (d *decoder) checkKeyFields(m mapping, key string, src *Source, ent *Entity) {
	if src.Schema == nil {
		return
	}
	for _, k := range ent.Keys {
		switch fld, ok := src.Schema.Field(k); {
		case !ok:
			d.addf(m.lineOf(key), m.field(key), "entity %q is keyed by field %q, which is not in schema %s of source %q; fields: %s", ent.Name, k, src.Schema.Name, src.Name, fieldNames(src.Schema, nil))
		case !isKey(fld):
			d.addf(m.lineOf(key), m.field(key), "entity %q is keyed by field %q, which is %s in schema %s of source %q; an entity key must be a string, long or int", ent.Name, k, typeName(fld), src.Schema.Name, src.Name)
		}
	}
}

// checkRepartitionTopic checks that a repartition topic name is valid for
// Kafka (its length is the only thing that can be wrong: the prefix, source
// and entity names are checked).
func (d *decoder) checkRepartitionTopic(m mapping, t string) {
	if len(t) > maxTopicLen {
		d.addf(m.lineOf("entity"), m.field("entity"), "the repartition topic %s would be longer than Kafka's %d characters; shorten the source or entity name", t, maxTopicLen)
	}
}

func isNumeric(f schemas.Field) bool {
	switch f.Type {
	case "double", "float", "int", "long":
		return true
	}
	return false
}

func isKey(f schemas.Field) bool {
	switch f.Type {
	case "string", "long", "int":
		return true
	}
	return false
}

func isEventTime(f schemas.Field) bool { return f.Type == "long" || f.Type == "int" }

// typeName describes a field's Avro type for messages, e.g. "a nullable
// long (timestamp-millis)".
func typeName(f schemas.Field) string {
	s := f.Type
	if f.LogicalType != "" {
		s += " (" + f.LogicalType + ")"
	}
	if f.Nullable {
		s = "nullable " + s
	}
	return "of type " + s
}

// fieldNames lists the schema's fields that match keep (all if nil).
func fieldNames(s *schemas.Schema, keep func(schemas.Field) bool) string {
	var names []string
	for _, f := range s.Fields {
		if keep == nil || keep(f) {
			names = append(names, f.Name)
		}
	}
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// known lists the defined names of a kind, with close matches to name first.
func known(kind, name string, names []string) string {
	if len(names) == 0 {
		return fmt.Sprintf("no valid %s are defined; declare it under %s:", kind, kind)
	}
	s := fmt.Sprintf("defined %s: %s", kind, strings.Join(names, ", "))
	if c := closeNames(name, names, 1); len(c) > 0 {
		s = fmt.Sprintf("did you mean %q? %s", c[0], s)
	}
	return s
}
