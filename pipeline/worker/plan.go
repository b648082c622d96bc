package worker

import (
	"fmt"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
)

// sourcePlan is what the worker does with the records of one source topic:
// which entity key to route by and which features to update. Built once from
// the validated feature file.
type sourcePlan struct {
	src      *config.Source
	entity   string // entity name
	keyField string // event field holding the entity key
	features []featurePlan
	fields   []string // distinct value fields read by the features
}

type featurePlan struct {
	id       string
	window   aggregations.Window
	kind     aggregations.Kind
	fieldIdx int // index into sourcePlan.fields; -1 for count
}

func buildPlans(cfg *config.File) (map[string]*sourcePlan, error) {
	plans := make(map[string]*sourcePlan)
	for _, src := range cfg.Sources {
		if len(src.Features) == 0 || src.Entity == nil {
			continue
		}
		if _, dup := plans[src.Topic]; dup {
			return nil, fmt.Errorf("topic %s is used by two sources; a topic feeds one source", src.Topic)
		}
		p := &sourcePlan{src: src, entity: src.Entity.Name, keyField: src.Entity.Key}
		for _, f := range src.Features {
			fp := featurePlan{id: f.ID, window: f.Window, kind: f.Aggregation, fieldIdx: -1}
			if f.Aggregation.NeedsField() {
				fp.fieldIdx = indexOrAppend(&p.fields, f.Field)
			}
			p.features = append(p.features, fp)
		}
		plans[src.Topic] = p
	}
	if len(plans) == 0 {
		return nil, fmt.Errorf("%s defines no features, so a worker has nothing to compute", cfg.Path)
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
