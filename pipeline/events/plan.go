package events

import (
	"fmt"
	"slices"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
)

// Plan is what to do with the records of one topic: which fields make the
// Kafka key, which make the entity key of the features, and which features
// they update. Built once from the validated feature file; read-only
// afterwards.
//
// Three kinds exist: a source plan (Topic is the source topic; the features
// of the entity its Kafka key identifies, Rekeys naming the repartition
// topics its records are also re-keyed to); a repartition plan (Topic is a
// repartition topic, Repartition set; its records are the source's, keyed
// by the re-keyed entity); and a re-key plan (RekeyPlan: the source topic
// read with the re-keyed entity's features, for backfill, which re-keys in
// memory what the workers re-key through the repartition topic).
type Plan struct {
	Source *config.Source
	// Topic is the topic the plan's records are read from.
	Topic string
	// Repartition is set for a repartition plan and a re-key plan.
	Repartition *config.Repartition
	Entity      string // entity name of the features
	// KeyFields are the fields whose entity key (keys.EntityKey) the Kafka
	// record key must equal (else ReasonKeyMismatch).
	KeyFields []string
	// EntityKeys are the fields of the features' entity key (Event.Key):
	// KeyFields, except in a re-key plan.
	EntityKeys []string
	Features   []FeaturePlan
	// Fields are the value fields read by the features, indexed by
	// FeaturePlan.FieldIdx, each with its Encodings entry: one slot per
	// (field, encoding), so a name appears twice when a long field is
	// read both as a number and by approx_distinct.
	Fields    []string
	Encodings []Encoding
	types     []aggregations.ValueType // of each of Fields
	// BucketFields are the bucket fields of the bucketed features
	// (config.Feature.Bucket), indexed by FeaturePlan.BucketIdx; Decode
	// fills Event.Buckets with one bucket key each (see bucketValue).
	BucketFields []string
	bucketTypes  []aggregations.ValueType // of each of BucketFields
	// Rekeys are, for a source plan, the re-keyings each record also goes
	// through (config.Source.Repartitions order): Decode fills
	// Event.Rekeyed with one key each.
	Rekeys  []*config.Repartition
	ids     []string
	filters int      // features with a where
	strings bool     // some slot is EncodeString: Decode fills Event.Strs
	reads   []string // every field a record must provide: keys, event time, Fields, where fields
	fast    *fastPlan
	generic bool // never the fast path (tests compare both paths)
}

// Reads lists the fields the plan reads from a record: the entity key, the
// event time, the value fields and the fields of every where. A writer
// schema is compatible with the source's schema when these resolve (see
// schemas.Resolve); its other fields do not matter.
func (p *Plan) Reads() []string { return p.reads }

// FeaturePlan is one feature fed by a source.
type FeaturePlan struct {
	Feature  *config.Feature
	ID       string // name@version
	Window   aggregations.Window
	Kind     aggregations.Kind
	FieldIdx int // index into Plan.Fields; -1 for count
	// BucketIdx is the index into Plan.BucketFields of the feature's
	// bucket field; -1 for an unbucketed feature.
	BucketIdx int
	// match is 1 + the index in Event.Values of the outcome of the
	// feature's where (config.Feature.Filter); 0 (the zero value) when it
	// has none.
	match int
}

// HasStrings reports whether some slot is EncodeString (a last, first,
// first_k or last_k of a string field): Decode then fills Event.Strs with
// len(Fields) strings per event; for every other plan Event.Strs is empty.
func (p *Plan) HasStrings() bool { return p.strings }

// IDs returns the feature ids (name@version) in plan order.
func (p *Plan) IDs() []string { return p.ids }

// Width is the number of Event.Values of a decoded event: len(Fields),
// plus one per feature with a where.
func (p *Plan) Width() int { return len(p.Fields) + p.filters }

// Counts reports whether e counts toward the feature: true unless the
// feature has a where that is false for e. Free for features without one.
func (f *FeaturePlan) Counts(e *Event) bool { return f.CountsIn(e.Values) }

// CountsIn is Counts for the Values of an event kept elsewhere (values
// holds that event's Plan.Width() values).
func (f *FeaturePlan) CountsIn(values []float64) bool {
	return f.match == 0 || values[f.match-1] != 0
}

// Filtered reports whether the feature has a where.
func (f *FeaturePlan) Filtered() bool { return f.match != 0 }

// Value returns the feature's input value from a decoded event (0 for count).
func (f *FeaturePlan) Value(e *Event) float64 {
	if f.FieldIdx < 0 {
		return 0
	}
	return e.Values[f.FieldIdx]
}

// Str returns the feature's input string from a decoded event: the value
// of its EncodeString slot, "" for a feature of another type.
func (f *FeaturePlan) Str(e *Event) string {
	if f.FieldIdx < 0 || f.FieldIdx >= len(e.Strs) {
		return ""
	}
	return e.Strs[f.FieldIdx]
}

// Bucket returns the feature's bucket key from a decoded event (see
// bucketValue), "" for an unbucketed feature.
func (f *FeaturePlan) Bucket(e *Event) string {
	if f.BucketIdx < 0 || f.BucketIdx >= len(e.Buckets) {
		return ""
	}
	return e.Buckets[f.BucketIdx]
}

// Plans returns the plan of every topic the workers consume, by topic: each
// source that feeds at least one feature (directly or re-keyed), and each
// repartition topic. It fails when no source feeds a feature.
func Plans(cfg *config.File) (map[string]*Plan, error) {
	plans := make(map[string]*Plan)
	for _, src := range cfg.Sources {
		if len(src.Features) == 0 || src.Entity == nil {
			continue
		}
		// Defensive: config.Load already refuses two sources on one topic
		// and a file without features; these two errors guard hand-built
		// configs (config.File literals in tests and tools).
		if _, dup := plans[src.Topic]; dup {
			return nil, fmt.Errorf("topic %s is used by two sources; a topic feeds one source", src.Topic)
		}
		p := &Plan{Source: src, Topic: src.Topic, Entity: src.Entity.Name, KeyFields: src.Entity.Keys, EntityKeys: src.Entity.Keys,
			Rekeys: src.Repartitions}
		var direct []*config.Feature
		for _, f := range src.Features {
			if f.Repartition == nil {
				direct = append(direct, f)
			}
		}
		p.addFeatures(direct)
		// A record is valid for all of a source's features or for none:
		// the source side checks the fields the re-keyed features read too.
		for _, r := range src.Repartitions {
			for _, f := range r.Features {
				if f.Aggregation.NeedsField() {
					p.slot(f)
				}
				if f.Bucket != "" {
					p.bucketSlot(f)
				}
			}
		}
		p.finish()
		plans[src.Topic] = p
		for _, r := range src.Repartitions {
			rp := &Plan{Source: src, Topic: r.Topic, Repartition: r, Entity: r.Entity.Name, KeyFields: r.Entity.Keys, EntityKeys: r.Entity.Keys}
			rp.addFeatures(r.Features)
			rp.finish()
			plans[r.Topic] = rp
		}
	}
	if len(plans) == 0 { // defensive, as above
		return nil, fmt.Errorf("%s defines no features, so there is nothing to compute", cfg.Path)
	}
	return plans, nil
}

// RekeyPlan is the plan that reads the source topic of r, validating its
// records as the source's workers do (Kafka key = the source entity's key),
// with r's features keyed by r's entity: backfill's in-memory version of
// the workers' repartition topic, producing the same events.
func RekeyPlan(r *config.Repartition) *Plan {
	src := r.Source
	p := &Plan{Source: src, Topic: src.Topic, Repartition: r, Entity: r.Entity.Name, KeyFields: src.Entity.Keys, EntityKeys: r.Entity.Keys}
	p.addFeatures(r.Features)
	p.finish()
	return p
}

// Rekeyed reports whether the plan's features are keyed by other fields
// than its records' Kafka key (a re-key plan).
func (p *Plan) rekeyed() bool { return !slices.Equal(p.KeyFields, p.EntityKeys) }

func (p *Plan) addFeatures(fs []*config.Feature) {
	for _, f := range fs {
		fp := FeaturePlan{Feature: f, ID: f.ID, Window: f.Window, Kind: f.Aggregation, FieldIdx: -1, BucketIdx: -1}
		if f.Aggregation.NeedsField() {
			fp.FieldIdx = p.slot(f)
		}
		if f.Bucket != "" {
			fp.BucketIdx = p.bucketSlot(f)
		}
		p.Features = append(p.Features, fp)
		p.ids = append(p.ids, f.ID)
	}
}

// finish places the where outcomes after the Fields values and lists the
// fields the plan reads (Reads); call it once Fields is complete. A source
// plan also reads what its re-keyings need (their key fields and wheres),
// so that a record is valid for all of a source's features or for none.
func (p *Plan) finish() {
	for i := range p.Features {
		if p.Features[i].Feature.Filter != nil {
			p.filters++
			p.Features[i].match = len(p.Fields) + p.filters
		}
	}
	for _, f := range slices.Concat(p.KeyFields, p.EntityKeys, []string{p.Source.EventTime}, p.Fields, p.BucketFields) {
		indexOrAppend(&p.reads, f)
	}
	wheres := func(fps []FeaturePlan, fs []*config.Feature) {
		for _, fp := range fps {
			fs = append(fs, fp.Feature)
		}
		for _, f := range fs {
			if f.Filter != nil {
				for _, field := range f.Filter.Fields {
					indexOrAppend(&p.reads, field)
				}
			}
		}
	}
	wheres(p.Features, nil)
	for _, r := range p.Rekeys {
		for _, k := range r.Entity.Keys {
			indexOrAppend(&p.reads, k)
		}
		wheres(nil, r.Features)
	}
	p.compileFast()
}

// slot returns the index in Fields of the feature's field read its way,
// adding it when new.
func (p *Plan) slot(f *config.Feature) int {
	enc := encodingOf(f.Aggregation, f.ValueType)
	for i, name := range p.Fields {
		if name == f.Field && p.Encodings[i] == enc {
			return i
		}
	}
	p.Fields = append(p.Fields, f.Field)
	p.Encodings = append(p.Encodings, enc)
	p.strings = p.strings || enc == EncodeString
	p.types = append(p.types, f.ValueType)
	return len(p.Fields) - 1
}

// bucketSlot returns the index in BucketFields of the feature's bucket
// field, adding it when new.
func (p *Plan) bucketSlot(f *config.Feature) int {
	if i := slices.Index(p.BucketFields, f.Bucket); i >= 0 {
		return i
	}
	p.BucketFields = append(p.BucketFields, f.Bucket)
	p.bucketTypes = append(p.bucketTypes, f.BucketType)
	return len(p.BucketFields) - 1
}

func indexOrAppend(list *[]string, s string) int {
	for i, x := range *list {
		if x == s {
			return i
		}
	}
	*list = append(*list, s)
	return len(*list) - 1
}
