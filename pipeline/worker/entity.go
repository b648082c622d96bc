package worker

import (
	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/entity"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// entityState is the decoded worker state of one entity in one source
// partition: one Series per feature of the source, in plan order. It is
// stored as a single Pebble value (internal/entity) so that applying an
// event costs one point read, however many features and tiles there are.
type entityState struct {
	key      string
	series   []aggregations.Series
	seen     aggregations.Series // the first-seen marker (see seen.go); empty: none yet
	modified bool
	// gen is the publication generation that last handed the entity over
	// to partState.kept (publisher.dropLocked), for its eviction.
	gen uint64
	// ord numbers the entity among those its partition loaded
	// (partState.ords): the order in which a publication reads their
	// dirty tiles (groupedDirty).
	ord uint64
	// pubPos is groupedDirty's scratch (0 outside it): the entity's count
	// of dirty tiles, then their place in the publication's order.
	pubPos int
}

// encodeEntity encodes es; its first-seen marker, if any, is the series
// named seenID after the features.
func encodeEntity(dst []byte, plan *events.Plan, seenID string, es *entityState) []byte {
	if es.seen.Base.Empty() {
		return entity.Append(dst, plan.IDs(), es.series)
	}
	return entity.AppendWith(dst, plan.IDs(), es.series, seenID, &es.seen)
}

// decodeEntity fills es from a stored value. Series of features that are no
// longer in the plan are skipped; new features start empty. encodeEntity
// writes in plan order, so the k-th stored series is looked up at plan
// position k first: O(F) id comparisons for a value written with the
// current plan, O(F²) at worst after the feature file changed. The
// first-seen marker (any keys.IsSeen id) goes to es.seen.
func decodeEntity(src []byte, plan *events.Plan, es *entityState) error {
	es.series = make([]aggregations.Series, len(plan.Features))
	k := 0
	return entity.Decode(src, func(id []byte) *aggregations.Series {
		i := planIndex(plan, id, k)
		k++
		if i < 0 && keys.IsSeen(id) {
			return &es.seen
		}
		if i < 0 {
			return nil
		}
		return &es.series[i]
	})
}

// planIndex returns the index of feature id in plan, trying position hint
// first; -1 if the plan lacks it.
func planIndex(plan *events.Plan, id []byte, hint int) int {
	if hint < len(plan.Features) && plan.Features[hint].ID == string(id) {
		return hint
	}
	for i := range plan.Features {
		if plan.Features[i].ID == string(id) {
			return i
		}
	}
	return -1
}
