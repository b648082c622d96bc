package worker

import (
	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// The first-seen marker of an entity in a source: the smallest event time of
// its decoded events, whatever the features did with them (applied, or
// dropped as too late). The lookup view keeps it so that an entity stays
// known, and its empty windows read EMPTY_WINDOW rather than NOT_FOUND,
// after its tiles expired ("known" must not depend on tile expiry). It lives
// beside the features: in the entity's state value as the series named
// keys.SeenFeatureID(source) (so snapshots carry it), and in the feature log
// as that id's lifetime-base record (tile start aggregations.BaseStart),
// which only ever decreases and is never tombstoned. The series' Base holds
// the time as LastTS (Count 1, every value 0).

// seenFeature is the dirtyTile.feature of an entity's marker record.
const seenFeature = -1

// seenID returns the marker's feature id for plan's source. Cost: one
// string concatenation; loadPartition calls it once per partition.
func seenID(plan *events.Plan) string { return keys.SeenFeatureID(plan.Source.Name) }

// noteSeen lowers es's marker to ts if ts is earlier (or sets it), staging
// es and its marker record. A replayed record (already in state) only
// republishes the marker's current value.
func (w *Worker) noteSeen(ps *partState, es *entityState, ts int64, replay bool) {
	if replay {
		if !es.seen.Base.Empty() {
			ps.markDirty(dirtyTile{es, seenFeature, aggregations.BaseStart})
		}
		return
	}
	if !es.seen.Base.Empty() && es.seen.Base.LastTS <= ts {
		return
	}
	es.seen.Base = aggregations.IR{}
	es.seen.Base.Update(aggregations.Event{TS: ts})
	w.markModified(ps, es)
	ps.markDirty(dirtyTile{es, seenFeature, aggregations.BaseStart})
}
