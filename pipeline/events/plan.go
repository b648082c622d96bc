package events

import (
	"fmt"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
)

// Plan is what to do with the records of one source topic: which field
// holds the entity key and which features they update. Built once from the
// validated feature file; read-only afterwards.
type Plan struct {
	Source   *config.Source
	Entity   string // entity name
	KeyField string // event field holding the entity key
	Features []FeaturePlan
	Fields   []string // distinct value fields read by the features, indexed by FeaturePlan.FieldIdx
	ids      []string
	filters  int      // features with a where
	reads    []string // every field a record must provide: key, event time, Fields, where fields
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
	// match is 1 + the index in Event.Values of the outcome of the
	// feature's where (config.Feature.Filter); 0 (the zero value) when it
	// has none.
	match int
}

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

// Plans returns the plan of every source that feeds at least one feature,
// by topic. It fails when no source feeds a feature.
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
		p := &Plan{Source: src, Entity: src.Entity.Name, KeyField: src.Entity.Key}
		for _, f := range src.Features {
			fp := FeaturePlan{Feature: f, ID: f.ID, Window: f.Window, Kind: f.Aggregation, FieldIdx: -1}
			if f.Aggregation.NeedsField() {
				fp.FieldIdx = indexOrAppend(&p.Fields, f.Field)
			}
			p.Features = append(p.Features, fp)
			p.ids = append(p.ids, f.ID)
		}
		p.reads = []string{p.KeyField}
		indexOrAppend(&p.reads, src.EventTime)
		for _, f := range p.Fields {
			indexOrAppend(&p.reads, f)
		}
		for i := range p.Features {
			if flt := p.Features[i].Feature.Filter; flt != nil {
				p.filters++
				p.Features[i].match = len(p.Fields) + p.filters
				for _, f := range flt.Fields {
					indexOrAppend(&p.reads, f)
				}
			}
		}
		plans[src.Topic] = p
	}
	if len(plans) == 0 { // defensive, as above
		return nil, fmt.Errorf("%s defines no features, so there is nothing to compute", cfg.Path)
	}
	return plans, nil
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
