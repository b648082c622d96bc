// Package featurelog is the codec of the feature log, the compacted topic of
// tile upserts that workers publish and lookup replicas follow (see
// DESIGN.md, "Topics: one home each"). Its one writer is the worker's
// publisher (pipeline/worker, publisher.go); its one reader the lookup view
// (pipeline/lookup, view.go). Nothing else builds or parses its records.
//
// A record's key is keys.AppendFeatureLog of its keys.TileRef (entity, entity
// key, feature version or first-seen marker id, source partition, tile
// start); its value is the tile as aggregations.AppendTile encodes it, or
// nil (a tombstone) when the tile no longer exists. Compaction keeps the
// latest record per key.
package featurelog

import (
	"fmt"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// Append appends the key and value of the record of ref to slab and returns
// the extended slab and the two sub-slices of it (capacity-limited, so they
// stay valid when slab grows later). With ok false the value is nil: the
// tile's tombstone. Cost: no allocation beyond growing slab; about 12 bytes
// plus the three strings for the key, about 50 for a typical tile.
func Append(slab []byte, ref keys.TileRef, t aggregations.Tile, ok bool) (out, key, value []byte) {
	from := len(slab)
	slab = keys.AppendFeatureLog(slab, ref)
	key = slab[from:len(slab):len(slab)]
	if !ok {
		return slab, key, nil
	}
	from = len(slab)
	slab = aggregations.AppendTile(slab, t)
	return slab, key, slab[from:len(slab):len(slab)]
}

// Record is one parsed feature-log record.
type Record struct {
	Ref keys.TileRef
	// Tile is the tile's value; zero when Deleted.
	Tile aggregations.Tile
	// Deleted: a tombstone (the tile expired or was removed).
	Deleted bool
}

// Parse parses a record written by Append. Errors wrap keys.ErrMalformed
// (and keys.ErrOldLayout for a key of the layout without source partition,
// which readers skip) or aggregations.ErrCorrupt.
func Parse(key, value []byte) (Record, error) {
	raw, err := ParseRaw(key, value)
	ref := keys.TileRef{Entity: string(raw.Ref.Entity), EntityKey: string(raw.Ref.EntityKey), FeatureID: string(raw.Ref.FeatureID),
		SourcePartition: raw.Ref.SourcePartition, Start: raw.Ref.Start}
	if err != nil {
		return Record{Ref: ref}, err
	}
	return Record{Ref: ref, Tile: raw.Tile, Deleted: raw.Deleted}, nil
}

// RawRecord is a Record whose key names alias the parsed key
// (keys.RawTileRef).
type RawRecord struct {
	Ref     keys.RawTileRef
	Tile    aggregations.Tile
	Deleted bool
}

// ParseRaw is Parse without copying the key's names: the one parser of
// feature-log records, for the lookup replica's hot path (which copies a
// name only when it keeps it). Same errors as Parse.
func ParseRaw(key, value []byte) (RawRecord, error) {
	ref, err := keys.ParseFeatureLogRaw(key)
	if err != nil {
		return RawRecord{Ref: ref}, err
	}
	if value == nil {
		return RawRecord{Ref: ref, Deleted: true}, nil
	}
	t, rest, err := aggregations.DecodeTile(value)
	if err != nil {
		return RawRecord{Ref: ref}, fmt.Errorf("feature-log tile of %s: %w", ref.FeatureID, err)
	}
	if len(rest) != 0 {
		return RawRecord{Ref: ref}, fmt.Errorf("feature-log tile of %s: %d trailing bytes: %w", ref.FeatureID, len(rest), aggregations.ErrCorrupt)
	}
	return RawRecord{Ref: ref, Tile: t}, nil
}
