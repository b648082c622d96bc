// Package keys defines the byte layouts of featurepipe's Pebble keys and of the
// feature-log record keys. Every layout is prefix-free and ordered so that
// related keys sort together: all state of one source partition is one range,
// which is what snapshots and partition hand-off scan.
//
// Layouts (| is concatenation, u32/u64 big-endian, lp = uvarint length prefix):
//
//	worker state   'T' | lp(topic) | u32(partition) | entity key
//	input offset   'O' | lp(topic) | u32(partition)          -> u64 next offset
//	published      'P' | lp(topic) | u32(partition)          -> u64 offset published through
//	feature known  'F' | lp(topic) | u32(partition) | feature id  -> u64 offset it was first applied from
//	bootstrap      'B' | lp(topic) | u32(partition) | feature id  -> u64 next | u64 end
//	republish      'R' | lp(topic) | u32(partition) | feature id  -> empty
//	log layout     'K' | lp(topic) | u32(partition)          -> u64 feature-log key layout published under
//	repartition    'H' | lp(topic) | u32(partition) | lp(scope) | u32(source partition) -> u64 source offset applied through
//	stats hour     'M' | u64(hour start ms) | feature id       -> that hour's feature statistics (pipeline/monitor)
//	view entity    'E' | lp(entity) | entity key
//	view offset    'L' | lp(topic) | u32(partition)          -> u64 next feature-log offset
//	feature log    lp(entity) | lp(entity key) | lp(feature id) | u32(source partition) | u64(tile start ^ signbit)
//
// The feature-log key names the source partition whose worker state the tile
// comes from: an entity whose events producers spread over several partitions
// (different partitioners) has one partial tile per partition, each replaced
// only by its own partition's worker, and the lookup view merges them on read.
// Feature-log keys written before the source partition was part of the key
// (8 bytes after the feature id) fail to parse with ErrOldLayout.
//
// The feature log also carries one first-seen marker per (entity key,
// source, source partition): a record with the reserved feature id
// SeenFeatureID(source) and tile start math.MinInt64 (see SeenFeatureID).
// It is never tombstoned; the view keeps the earliest time over partitions.
package keys

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Key prefixes. One byte each, distinct, so that ranges never overlap.
const (
	prefixState     = 'T'
	prefixOffset    = 'O'
	prefixPublished = 'P'
	prefixView      = 'E'
	prefixViewLog   = 'L'
	prefixFeature   = 'F'
	prefixBootstrap = 'B'
	prefixRepublish = 'R'
	prefixLogLayout = 'K'
	prefixRepMark   = 'H'
	prefixStatsHour = 'M'
)

// FeatureLogLayout is the version of the feature-log key layout that
// AppendFeatureLog writes: 2 names the source partition; 1 (never
// recorded) did not.
const FeatureLogLayout = 2

// ErrMalformed is returned (wrapped) when a key does not have the expected layout.
var ErrMalformed = errors.New("keys: malformed key")

// ErrOldLayout is returned (wrapped, with ErrMalformed) by ParseFeatureLog for
// a feature-log key of the layout without the source partition, written by a
// featurepipe before it. Its tile cannot be attributed to a partition.
var ErrOldLayout = errors.New("keys: feature-log key without source partition (older layout)")

func appendLP(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func readLP(src []byte) (string, []byte, error) {
	n, w := binary.Uvarint(src)
	if w <= 0 || uint64(len(src)-w) < n {
		return "", nil, ErrMalformed
	}
	return string(src[w : w+int(n)]), src[w+int(n):], nil
}

// readLPBytes is readLP without a copy: the string aliases src.
func readLPBytes(src []byte) ([]byte, []byte, error) {
	n, w := binary.Uvarint(src)
	if w <= 0 || uint64(len(src)-w) < n {
		return nil, nil, ErrMalformed
	}
	return src[w : w+int(n) : w+int(n)], src[w+int(n):], nil
}

func appendTopicPartition(dst []byte, prefix byte, topic string, partition int32) []byte {
	dst = append(dst, prefix)
	dst = appendLP(dst, topic)
	return binary.BigEndian.AppendUint32(dst, uint32(partition))
}

// State is the worker-state key of one entity in one source partition.
func State(dst []byte, topic string, partition int32, entityKey string) []byte {
	dst = appendTopicPartition(dst, prefixState, topic, partition)
	return append(dst, entityKey...)
}

// StatePartition returns the bounds [lower, upper) of all state keys of a source partition.
func StatePartition(topic string, partition int32) (lower, upper []byte) {
	lower = appendTopicPartition(nil, prefixState, topic, partition)
	upper = appendTopicPartition(nil, prefixState, topic, partition+1)
	return lower, upper
}

// EntityKeyFromState returns the entity key of a state key built by State.
func EntityKeyFromState(k []byte) (string, error) {
	key, err := StateEntityKey(k)
	return string(key), err
}

// StateEntityKey is EntityKeyFromState without a copy: the entity key
// aliases k.
func StateEntityKey(k []byte) ([]byte, error) {
	if len(k) == 0 || k[0] != prefixState {
		return nil, fmt.Errorf("%w: not a state key", ErrMalformed)
	}
	n, w := binary.Uvarint(k[1:])
	if rest := uint64(len(k) - 1 - w); w <= 0 || rest < n || rest-n < 4 {
		return nil, fmt.Errorf("%w: state key", ErrMalformed)
	}
	return k[1+w+int(n)+4:], nil
}

// Offset is the key of the next source offset to apply for a partition.
func Offset(topic string, partition int32) []byte {
	return appendTopicPartition(nil, prefixOffset, topic, partition)
}

// Published is the key of the source offset through which the feature log has
// been published for a partition (always <= the Offset value).
func Published(topic string, partition int32) []byte {
	return appendTopicPartition(nil, prefixPublished, topic, partition)
}

// FeatureKnown is the key recording that a feature version's state exists in
// a partition, and from which offset the live stream applied it.
func FeatureKnown(topic string, partition int32, featureID string) []byte {
	return append(appendTopicPartition(nil, prefixFeature, topic, partition), featureID...)
}

// Bootstrap is the key of a feature version's bootstrap progress in a
// partition: history in [next, end) still has to be replayed into it.
func Bootstrap(topic string, partition int32, featureID string) []byte {
	return append(appendTopicPartition(nil, prefixBootstrap, topic, partition), featureID...)
}

// Republish is the key marking that every tile of a feature version in a
// partition must be published again (after its bootstrap).
func Republish(topic string, partition int32, featureID string) []byte {
	return append(appendTopicPartition(nil, prefixRepublish, topic, partition), featureID...)
}

// PublishedLayout is the key of the feature-log key layout a partition's
// tiles were published under (a PutU64 value). A partition with state but
// without it published its tiles under layout 1, which readers skip: its
// worker republishes every tile once.
func PublishedLayout(topic string, partition int32) []byte {
	return appendTopicPartition(nil, prefixLogLayout, topic, partition)
}

// RepartitionMark is the key of a repartition partition's high-water mark
// for one source partition: the highest source offset of that partition
// whose re-keyed record was applied (a PutU64 value). Records at or below
// it are duplicates (producer retries, or re-production by a restarted or
// zombie worker) and are skipped. scope is "" for the live stream, or the
// feature id of a bootstrapping version, which replays history with marks
// of its own. Written in the same Pebble batch as the state it describes.
func RepartitionMark(topic string, partition int32, scope string, sourcePartition int32) []byte {
	dst := appendLP(appendTopicPartition(nil, prefixRepMark, topic, partition), scope)
	return binary.BigEndian.AppendUint32(dst, uint32(sourcePartition))
}

// RepartitionMarks returns the bounds [lower, upper) of the marks of one
// scope of a repartition partition.
func RepartitionMarks(topic string, partition int32, scope string) (lower, upper []byte) {
	lower = appendLP(appendTopicPartition(nil, prefixRepMark, topic, partition), scope)
	upper = binary.BigEndian.AppendUint32(append([]byte(nil), lower...), 1<<32-1)
	upper = append(upper, 0xff)
	return lower, upper
}

// RepartitionMarkSource returns the source partition of a RepartitionMark key
// (its last four bytes).
func RepartitionMarkSource(k []byte) (int32, error) {
	if len(k) < 5 || k[0] != prefixRepMark {
		return 0, fmt.Errorf("%w: not a repartition mark key", ErrMalformed)
	}
	return int32(binary.BigEndian.Uint32(k[len(k)-4:])), nil
}

// StatsHour is the key of one feature version's statistics over the hour
// starting at hourMS (epoch ms, >= 0): the worker's hourly statistics kept
// for the week-earlier baseline. Keys sort by hour, so the hours before a
// time are one range (StatsHoursBefore).
func StatsHour(hourMS int64, featureID string) []byte {
	dst := binary.BigEndian.AppendUint64([]byte{prefixStatsHour}, uint64(hourMS))
	return append(dst, featureID...)
}

// StatsHours returns the bounds [lower, upper) of every StatsHour key.
func StatsHours() (lower, upper []byte) {
	return []byte{prefixStatsHour}, []byte{prefixStatsHour + 1}
}

// StatsHoursBefore returns the bounds [lower, upper) of the StatsHour keys
// of hours starting before hourMS.
func StatsHoursBefore(hourMS int64) (lower, upper []byte) {
	return []byte{prefixStatsHour}, binary.BigEndian.AppendUint64([]byte{prefixStatsHour}, uint64(max(hourMS, 0)))
}

// ParseStatsHour returns the hour and feature id of a StatsHour key.
func ParseStatsHour(k []byte) (hourMS int64, featureID string, err error) {
	if len(k) < 9 || k[0] != prefixStatsHour {
		return 0, "", fmt.Errorf("%w: not a statistics hour key", ErrMalformed)
	}
	return int64(binary.BigEndian.Uint64(k[1:9])), string(k[9:]), nil
}

// PutRange encodes a bootstrap range value.
func PutRange(next, end int64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(next)), uint64(end))
}

// Range decodes a value written by PutRange.
func Range(b []byte) (next, end int64, err error) {
	if len(b) != 16 {
		return 0, 0, fmt.Errorf("%w: range value of %d bytes", ErrMalformed, len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:])), nil
}

// View is the lookup-view key of one entity: all its features in one value.
func View(dst []byte, entity, entityKey string) []byte {
	dst = append(dst, prefixView)
	dst = appendLP(dst, entity)
	return append(dst, entityKey...)
}

// ViewBounds are the bounds of every lookup-view key (View): lower
// inclusive, upper exclusive.
func ViewBounds() (lower, upper []byte) { return []byte{prefixView}, []byte{prefixView + 1} }

// ViewLogOffset is the lookup-view key of the next feature-log offset to read.
func ViewLogOffset(topic string, partition int32) []byte {
	return appendTopicPartition(nil, prefixViewLog, topic, partition)
}

// TileRef names one tile of one feature of one entity: the key of a feature-log record.
type TileRef struct {
	Entity    string
	EntityKey string
	FeatureID string // name@version
	// SourcePartition is the partition of the source topic whose worker
	// state holds the tile: the tiles of one entity from several partitions
	// are partial and merge on read.
	SourcePartition int32
	Start           int64 // tile start, ms (math.MinInt64 for a lifetime base)
}

// AppendFeatureLog appends the feature-log record key of r. Compaction keeps
// the latest record per key, so the log holds the latest value of every tile
// of every source partition. The key is 12 bytes longer than its three
// length-prefixed strings (4 of them the source partition).
func AppendFeatureLog(dst []byte, r TileRef) []byte {
	dst = appendLP(dst, r.Entity)
	dst = appendLP(dst, r.EntityKey)
	dst = appendLP(dst, r.FeatureID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(r.SourcePartition))
	return binary.BigEndian.AppendUint64(dst, uint64(r.Start)^(1<<63))
}

// ParseFeatureLog parses a key written by AppendFeatureLog.
func ParseFeatureLog(k []byte) (TileRef, error) {
	raw, err := ParseFeatureLogRaw(k)
	r := TileRef{Entity: string(raw.Entity), EntityKey: string(raw.EntityKey), FeatureID: string(raw.FeatureID),
		SourcePartition: raw.SourcePartition, Start: raw.Start}
	return r, err
}

// RawTileRef is a TileRef whose names alias the parsed key's bytes
// (ParseFeatureLogRaw): valid only while those bytes are, and not to be
// modified.
type RawTileRef struct {
	Entity, EntityKey, FeatureID []byte
	SourcePartition              int32
	Start                        int64
}

// ParseFeatureLogRaw is ParseFeatureLog without copying the names: it
// allocates nothing (a replica parses every feature-log record;
// featurelog's TestParseRawEqualsParse). On error the fields parsed so far
// are set.
func ParseFeatureLogRaw(k []byte) (RawTileRef, error) {
	var r RawTileRef
	var err error
	if r.Entity, k, err = readLPBytes(k); err != nil {
		return r, fmt.Errorf("%w: feature-log entity", ErrMalformed)
	}
	if r.EntityKey, k, err = readLPBytes(k); err != nil {
		return r, fmt.Errorf("%w: feature-log entity key", ErrMalformed)
	}
	if r.FeatureID, k, err = readLPBytes(k); err != nil {
		return r, fmt.Errorf("%w: feature-log feature id", ErrMalformed)
	}
	switch len(k) {
	case 12:
	case 8:
		return r, fmt.Errorf("%w: %w", ErrMalformed, ErrOldLayout)
	default:
		return r, fmt.Errorf("%w: feature-log source partition and tile start", ErrMalformed)
	}
	r.SourcePartition = int32(binary.BigEndian.Uint32(k))
	if r.SourcePartition < 0 {
		return r, fmt.Errorf("%w: feature-log source partition %d", ErrMalformed, r.SourcePartition)
	}
	r.Start = int64(binary.BigEndian.Uint64(k[4:]) ^ (1 << 63))
	return r, nil
}

// seenPrefix starts every reserved first-seen feature id. Feature ids are
// name@version with a validated name, so none starts with a NUL byte.
const seenPrefix = "\x00seen:"

// SeenFeatureID is the reserved feature id of the first-seen marker of an
// entity in source: the feature-log record (and the worker-state series)
// whose lifetime base holds, as its LastTS, the smallest event time of the
// entity's events in that source. The marker only ever decreases and is
// never deleted, so an entity stays known after its tiles expire.
func SeenFeatureID(source string) string { return seenPrefix + source }

// IsSeen reports whether a feature id is a first-seen marker id.
func IsSeen(id []byte) bool {
	return len(id) >= len(seenPrefix) && string(id[:len(seenPrefix)]) == seenPrefix
}

// IsSeenID is IsSeen for an id held as a string.
func IsSeenID(id string) bool {
	return len(id) >= len(seenPrefix) && id[:len(seenPrefix)] == seenPrefix
}

// PutU64 encodes an offset value.
func PutU64(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

// U64 decodes an offset value written by PutU64.
func U64(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: offset value of %d bytes", ErrMalformed, len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}
