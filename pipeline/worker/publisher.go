package worker

import (
	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// appendRecord appends the feature-log record of tile start of feature
// (an index into ps.plan.Features, or seenFeature for the entity's
// first-seen marker) of es, in ps's source partition, to slab with the
// feature-log codec (internal/featurelog), returning slab and the key and
// value sub-slices. The value is the tile's current value in es, or nil (a
// tombstone) when the tile no longer exists; a marker is always a value.
// Every feature-log record the worker produces is built here.
func appendRecord(slab []byte, ps *partState, es *entityState, feature int, start int64) (out, key, value []byte) {
	ref := keys.TileRef{Entity: ps.plan.Entity, EntityKey: es.key, SourcePartition: ps.tp.partition, Start: start}
	if feature == seenFeature {
		ref.FeatureID, ref.Start = ps.seenID, aggregations.BaseStart
		return featurelog.Append(slab, ref, aggregations.Tile{Start: aggregations.BaseStart, IR: es.seen.Base}, true)
	}
	ref.FeatureID = ps.plan.Features[feature].ID
	t, ok := es.series[feature].Tile(start)
	return featurelog.Append(slab, ref, t, ok)
}
