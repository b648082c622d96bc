package worker

import (
	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/entity"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// entityState is the decoded worker state of one entity in one source
// partition: one Series per feature of the source, in plan order. It is
// stored as a single Pebble value (internal/entity) so that applying an
// event costs one point read, however many features and tiles there are.
type entityState struct {
	key      string
	series   []aggregations.Series
	modified bool
}

func encodeEntity(dst []byte, plan *events.Plan, es *entityState) []byte {
	return entity.Append(dst, plan.IDs(), es.series)
}

// decodeEntity fills es from a stored value. Series of features that are no
// longer in the plan are skipped; new features start empty.
func decodeEntity(src []byte, plan *events.Plan, es *entityState) error {
	es.series = make([]aggregations.Series, len(plan.Features))
	return entity.Decode(src, func(id string) *aggregations.Series {
		for i := range plan.Features {
			if plan.Features[i].ID == id {
				return &es.series[i]
			}
		}
		return nil
	})
}
