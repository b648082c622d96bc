package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/featurepipe/featurepipe/aggregations"
)

// Allowed keys of each block, in the order the documentation lists them.
var (
	fileKeys    = []string{"kafka", "entities", "sources", "features", "services", "monitor"}
	kafkaKeys   = []string{"feature_log_topic", "dead_letter_topic", "lookup_log_topic", "registry_topic", "group", "partitions", "replication_factor", "security", "schema_registry", "repartition_prefix"}
	entityKeys  = []string{"name", "key", "keys"}
	sourceKeys  = []string{"name", "topic", "schema", "event_time", "encoding", "writer_schemas", "entity"}
	featureKeys = []string{"name", "version", "entity", "source", "aggregation", "field", "window", "hop", "owner", "description", "tags", "deprecated", "replaced_by", "sunset", "default", "where", "ttl", "expression", "inputs", "monitor", "percentile", "k", "bucket", "max_buckets"}
	serviceKeys = []string{"name", "owner", "description", "features", "models"}
)

// decoder turns the YAML node tree into the File's types, recording every
// structural problem (wrong node kind, unknown or duplicate key, missing
// required value, wrong scalar type) and carrying on, so one run reports all
// of them. Semantic checks live in validate.go.
type decoder struct {
	file string
	errs Errors

	kafka    mapping // zero if the kafka block is absent
	monitor  Monitor // the file's monitor block over DefaultMonitor
	entities []entityItem
	sources  []sourceItem
	features []featureItem
	services []serviceItem
}

type entityItem struct {
	e *Entity
	m mapping
}

type sourceItem struct {
	s *Source
	m mapping
	// entity is the entity the source's Kafka key identifies, as written
	// ("" when not declared).
	entity string
}

type featureItem struct {
	f *Feature
	m mapping
	// Raw text of values that are parsed during validation.
	aggregation, window, hop string
	sunset                   string
	where                    string
	// Derived features and TTL (derived.go, ttl.go).
	ttl, expression string
	inputs          []*yaml.Node
	percentile      *float64 // nil when absent
	k               int64    // valid when kOK
	kPresent, kOK   bool
	// bucket and max_buckets (bucket.go).
	bucket                      string
	maxBuckets                  int64 // valid when maxBucketsOK
	maxBucketsSet, maxBucketsOK bool
}

// mapping is a YAML mapping whose keys were checked against an allowed list.
type mapping struct {
	path string // field path of the mapping itself, "" for the document
	line int
	vals map[string]*yaml.Node // key -> value node (aliases resolved)
}

// field returns the field path of key inside m.
func (m mapping) field(key string) string { return join(m.path, key) }

// lineOf returns the line of key's value, or of the mapping if key is absent.
func (m mapping) lineOf(key string) int {
	if n := m.vals[key]; n != nil && n.Line > 0 {
		return n.Line
	}
	return m.line
}

// get returns key's value node, or nil if the key is absent or null.
func (m mapping) get(key string) *yaml.Node {
	n := m.vals[key]
	if n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	return n
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) addf(line int, field, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// yamlLine extracts the line from yaml.v3's "yaml: line N: problem" errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decodeYAML parses data into a single YAML document. It returns false (with
// the problem recorded) if the file is empty or not valid YAML.
func (d *decoder) decodeYAML(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) || err == nil && len(doc.Content) == 0 {
		d.addf(1, "", "file is empty; it needs at least one feature under features:")
		return nil, false
	}
	if err != nil {
		d.syntaxError(err)
		return nil, false
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err)
		return nil, false
	default:
		d.addf(extra.Line, "", "a second YAML document starts here (after ---); the feature file is one document")
		return nil, false
	}
	return doc.Content[0], true
}

// parserProblems are the problems yaml.v3's parser (as opposed to its
// scanner) reports. For these yaml.v3 prints a 0-based line: that of the
// enclosing block's start when it is not the first line, else that of the
// offending token. Scanner problems carry the 1-based line of the problem.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if parserProblems[m[2]] {
			line++
		}
		d.addf(line, "", "invalid YAML: %s", m[2])
		return
	}
	d.addf(0, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// mapping checks that n is a mapping whose keys are all in allowed, each at
// most once. It returns false (with the problem recorded) if n is not a
// mapping; unknown and duplicate keys are recorded and skipped.
func (d *decoder) mapping(n *yaml.Node, path string, allowed []string) (mapping, bool) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.addf(n.Line, path, "expected a mapping with keys %s; got %s", strings.Join(allowed, ", "), describe(n))
		return mapping{}, false
	}
	m := mapping{path: path, line: n.Line, vals: make(map[string]*yaml.Node, len(n.Content)/2)}
	keyLines := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.addf(k.Line, path, "keys must be plain names; allowed: %s", strings.Join(allowed, ", "))
			continue
		}
		if !slices.Contains(allowed, k.Value) {
			hint := ""
			if c := closeNames(k.Value, allowed, 1); len(c) > 0 {
				hint = "; did you mean " + c[0] + "?"
			}
			d.addf(k.Line, join(path, k.Value), "unknown key %q; allowed: %s%s", k.Value, strings.Join(allowed, ", "), hint)
			continue
		}
		if first, dup := keyLines[k.Value]; dup {
			d.addf(k.Line, join(path, k.Value), "key given twice (first at line %d); keep one", first)
			continue
		}
		keyLines[k.Value] = k.Line
		if v.Line == 0 {
			v.Line = k.Line
		}
		m.vals[k.Value] = v
	}
	return m, true
}

// list returns the items of the sequence under key (nil if absent or null).
func (d *decoder) list(m mapping, key, what string) []*yaml.Node {
	n := m.get(key)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.addf(n.Line, m.field(key), "expected a list of %s; got %s", what, describe(n))
		return nil
	}
	return n.Content
}

// str returns the string under key. A required key that is absent, null or
// empty is recorded as missing, with need saying what the value is for.
func (d *decoder) str(m mapping, key string, required bool, need string) string {
	n := m.get(key)
	if n == nil {
		if required {
			d.addf(m.lineOf(key), m.field(key), "required: %s", need)
		}
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		d.addf(n.Line, m.field(key), "expected a string (%s); got %s", need, describe(n))
		return ""
	}
	if required && strings.TrimSpace(n.Value) == "" {
		d.addf(n.Line, m.field(key), "must not be empty: %s", need)
	}
	return n.Value
}

// integer returns the integer under key; present is false if the key is
// absent or null, ok is false if the value is not an integer (recorded).
func (d *decoder) integer(m mapping, key string) (v int64, present, ok bool) {
	n := m.get(key)
	if n == nil {
		return 0, false, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		d.addf(n.Line, m.field(key), "expected an integer; got %s", describe(n))
		return 0, true, false
	}
	return v, true, true
}

// number returns the finite number under key, or nil if absent or invalid.
func (d *decoder) number(m mapping, key string) *float64 {
	n := m.get(key)
	if n == nil {
		return nil
	}
	var v float64
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || n.Decode(&v) != nil ||
		math.IsNaN(v) || math.IsInf(v, 0) {
		d.addf(n.Line, m.field(key), "expected a finite number; got %s", describe(n))
		return nil
	}
	return &v
}

// boolean returns the boolean under key (false if absent or invalid).
func (d *decoder) boolean(m mapping, key string) bool {
	n := m.get(key)
	if n == nil {
		return false
	}
	var v bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&v) != nil {
		d.addf(n.Line, m.field(key), "expected true or false; got %s", describe(n))
		return false
	}
	return v
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// describe names a node for messages: a scalar by its text, others by kind.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "an unsupported YAML node"
}

// decodeFile walks the document. Everything it could read lands in d's item
// lists, even items with problems, so validation can still check the rest.
func (d *decoder) decodeFile(root *yaml.Node) {
	top, ok := d.mapping(root, "", fileKeys)
	if !ok {
		return
	}
	if n := top.get("kafka"); n != nil {
		if m, ok := d.mapping(n, "kafka", kafkaKeys); ok {
			d.kafka = m
		}
	}
	d.monitor = d.decodeMonitor(top.get("monitor"), "monitor", DefaultMonitor)
	for i, n := range d.list(top, "entities", "entities (name, key or keys)") {
		m, ok := d.mapping(n, fmt.Sprintf("entities[%d]", i), entityKeys)
		if !ok {
			continue
		}
		e := &Entity{
			Name: d.str(m, "name", true, "the entity's name, referenced by features"),
			Line: m.line,
		}
		d.entityKeyFields(m, e)
		d.entities = append(d.entities, entityItem{m: m, e: e})
	}
	for i, n := range d.list(top, "sources", "sources (name, topic, schema, event_time)") {
		m, ok := d.mapping(n, fmt.Sprintf("sources[%d]", i), sourceKeys)
		if !ok {
			continue
		}
		d.sources = append(d.sources, sourceItem{m: m, s: &Source{
			Name:       d.str(m, "name", true, "the source's name, referenced by features"),
			Topic:      d.str(m, "topic", true, "the Kafka topic the events are read from"),
			SchemaPath: d.str(m, "schema", true, "path of the events' Avro schema (.avsc), relative to this file"),
			EventTime:  d.str(m, "event_time", true, "the event field holding the event time (Avro long, milliseconds)"),
			Encoding:   d.str(m, "encoding", false, "how record values are encoded: single-object or confluent"),
			Line:       m.line,
		}, entity: d.str(m, "entity", false, "the entity its records' Kafka key identifies")})
		s := d.sources[len(d.sources)-1].s
		for j, n := range d.list(m, "writer_schemas", "schema paths (.avsc)") {
			n = deref(n)
			if n.Kind != yaml.ScalarNode || strings.TrimSpace(n.Value) == "" {
				d.addf(n.Line, fmt.Sprintf("%s[%d]", m.field("writer_schemas"), j), "expected the path of an Avro schema (.avsc); got %s", describe(n))
				continue
			}
			s.WriterSchemaPaths = append(s.WriterSchemaPaths, n.Value)
		}
	}
	featuresNode := top.get("features")
	features := d.list(top, "features", "features")
	if len(features) == 0 && (featuresNode == nil || featuresNode.Kind == yaml.SequenceNode) {
		d.addf(top.lineOf("features"), "features", "no features defined; add at least one under features:")
	}
	for i, n := range features {
		m, ok := d.mapping(n, fmt.Sprintf("features[%d]", i), featureKeys)
		if !ok {
			continue
		}
		// A derived feature (expression:) has no source, aggregation or
		// window of its own: see derived.go.
		derived := m.get("expression") != nil
		f := &Feature{
			Name:        d.str(m, "name", true, "the feature's name"),
			Entity:      d.str(m, "entity", true, "the entity the feature is computed for"),
			Source:      d.str(m, "source", !derived, "the source whose events feed the feature"),
			Field:       d.str(m, "field", false, "the event field to aggregate"),
			Owner:       d.str(m, "owner", true, "the team answerable for the feature"),
			Description: d.str(m, "description", true, "what the feature means, for its users"),
			Deprecated:  d.boolean(m, "deprecated"),
			ReplacedBy:  d.str(m, "replaced_by", false, "the version that replaces this one, as name@version"),
			Default:     d.number(m, "default"),
			Monitor:     d.decodeMonitor(m.get("monitor"), m.field("monitor"), d.monitor),
			Line:        m.line,
		}
		switch v, present, ok := d.integer(m, "version"); {
		case !present:
			d.addf(m.lineOf("version"), m.field("version"), "required: a positive integer (1, 2, ...); a changed definition needs a new version")
		case ok && (v < 1 || v > math.MaxInt32):
			d.addf(m.lineOf("version"), m.field("version"), "must be a positive integer (1, 2, ...); got %d", v)
		case ok:
			f.Version = int(v)
		}
		for j, t := range d.list(m, "tags", "strings") {
			t = deref(t)
			if t.Kind != yaml.ScalarNode || strings.TrimSpace(t.Value) == "" {
				d.addf(t.Line, fmt.Sprintf("%s[%d]", m.field("tags"), j), "expected a non-empty string; got %s", describe(t))
				continue
			}
			f.Tags = append(f.Tags, t.Value)
		}
		it := featureItem{
			f:           f,
			m:           m,
			aggregation: d.str(m, "aggregation", !derived, "one of "+strings.Join(aggregations.KindNames(), ", ")),
			window:      d.str(m, "window", !derived, `a duration with unit s, m, h or d (e.g. 30d), or "lifetime"`),
			hop:         d.str(m, "hop", false, "a duration with unit s, m, h or d"),
			sunset:      d.str(m, "sunset", false, "the date this version stops being served, YYYY-MM-DD"),
			where:       d.str(m, "where", false, `a boolean expression over the source's fields, e.g. "amount > 100.0"`),
			ttl:         d.str(m, "ttl", false, "a duration with unit s, m, h or d (e.g. 30d)"),
			expression:  d.str(m, "expression", false, `an expression over other features of the entity, e.g. "txn_amount_sum_1h / txn_amount_avg_30d"`),
			inputs:      d.list(m, "inputs", "feature versions (name@version)"),
			percentile:  d.number(m, "percentile"),
		}
		it.k, it.kPresent, it.kOK = d.integer(m, "k")
		it.bucket = d.str(m, "bucket", false, "the event field whose values split the feature into buckets, e.g. merchant_category")
		it.maxBuckets, it.maxBucketsSet, it.maxBucketsOK = d.integer(m, "max_buckets")
		d.features = append(d.features, it)
	}
	d.decodeServices(top)
}

// entityKeyFields reads an entity's key fields: `key: user_id` (one field)
// or `keys: [user_id, merchant_id]` (a composite key; one field is the same
// as key:). Exactly one of the two is required; fields are distinct.
func (d *decoder) entityKeyFields(m mapping, e *Entity) {
	const need = "the event field that identifies the entity (key: user_id), or the fields that together do (keys: [user_id, merchant_id])"
	_, hasKey := m.vals["key"]
	if _, hasKeys := m.vals["keys"]; !hasKeys {
		if k := d.str(m, "key", true, need); k != "" {
			e.Key, e.Keys = k, []string{k}
		}
		return
	}
	if hasKey {
		d.addf(m.lineOf("keys"), m.field("keys"), "give key (one field) or keys (a list of fields), not both")
		return
	}
	n := m.get("keys")
	items := d.list(m, "keys", "event field names")
	switch {
	case n != nil && n.Kind != yaml.SequenceNode:
		return // reported by list
	case len(items) == 0:
		d.addf(m.lineOf("keys"), m.field("keys"), "required: %s", need)
		return
	}
	var ks []string
	for j, it := range items {
		it = deref(it)
		path := fmt.Sprintf("%s[%d]", m.field("keys"), j)
		if it.Kind != yaml.ScalarNode || strings.TrimSpace(it.Value) == "" {
			d.addf(it.Line, path, "expected an event field name; got %s", describe(it))
			return
		}
		if slices.Contains(ks, it.Value) {
			d.addf(it.Line, path, "field %q is listed twice; each key field once", it.Value)
			return
		}
		ks = append(ks, it.Value)
	}
	e.Keys = ks
	if len(ks) == 1 {
		e.Key = ks[0]
	}
}
