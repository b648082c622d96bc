package lookup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/state"
)

// The view is written with blind writes: the consumer does not read an
// entity's view to apply feature-log records to it. It writes the records
// themselves, as one Pebble merge operand per entity and batch (an ops
// value), and ViewMerger folds them into the view when Pebble reads the key
// (a lookup's Get: the value it returns is always a whole view) or
// compacts it (several operands into one; into a view once the entity's
// base value is in the compaction, which makes it a plain value again).
// So a catch-up costs no point read per entity and batch, and an entity
// changed in many batches is decoded and encoded once per compaction
// instead of once per batch. The exception: a view the lookup cache holds
// is written whole (its cached value with the records applied, which the
// cache needs anyway), so that the entities lookups read do not pile up
// operands for every read to merge again. With the lookup cache disabled
// (Options.CacheEntries < 0) every write is an operand, and a read of an
// entity changed in many batches since Pebble last flushed or compacted it
// merges them all.
//
// Values of view keys are thus of two kinds, told apart by their first
// bytes:
//
//   - a view, entityView.encode's layout: it starts with a canonical
//     uvarint (the entry count), never with opsMagic;
//   - an ops value: opsMagic (an overlong uvarint zero, which no canonical
//     uvarint starts with), then records, each uvarint(len key), the
//     feature-log key, uvarint(0 for a tombstone, else 1 + len value), the
//     value, varint(record timestamp, ms). Two ops values concatenated
//     (the second without its magic) are the ops value of both, in order.
//
// Applying an ops value to a view is applying its records in order, exactly
// as the feature log's consumer would one by one (applyOp), so a merge of
// any run of consecutive operands is the same whatever Pebble groups.

// opsMagic starts every ops value.
const opsMagic = "\x80\x00"

// ViewMergerName names ViewMerger in the stores Pebble writes: a store is
// always opened with the merger it was created with.
const ViewMergerName = "featurepipe.lookup-view.v1"

// ViewMerger is the merge operator of a lookup replica's store: see
// OpenStore.
var ViewMerger = &pebble.Merger{Name: ViewMergerName, Merge: newViewMerge}

// StoreOptions returns o with the lookup view's merge operator: the options
// of a store for Options.Store.
func StoreOptions(o state.Options) state.Options {
	o.Merger = ViewMerger
	return o
}

// OpenStore opens (creating if needed) a lookup replica's store in dir with
// StoreOptions(o). A store a featurepipe before blind view writes created
// (it names Pebble's default merger, and Pebble refuses to open it with
// another) is a view only, rebuilt from snapshots or the feature log like
// any view of an older layout: it is removed, with a warning on o.Log, and
// created anew.
func OpenStore(dir string, o state.Options) (*state.Store, error) {
	o = StoreOptions(o)
	name, err := state.StoredMergerName(dir, o.FS)
	if err != nil {
		return nil, err
	}
	if name != "" && name != ViewMergerName {
		if o.Log != nil {
			o.Log.Warn("the lookup view's store was written by an older featurepipe: removed, it is rebuilt from snapshots or the feature log",
				zap.String("dir", dir), zap.String("merger", name))
		}
		fs := o.FS
		if fs == nil {
			fs = vfs.Default
		}
		if err := fs.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("remove the lookup view of an older featurepipe: %w", err)
		}
	}
	return state.Open(dir, o)
}

// appendOp appends one feature-log record to an ops value being built (the
// caller starts it with opsMagic). value nil is a tombstone.
func appendOp(dst, key, value []byte, ts int64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	if value == nil {
		dst = append(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(value))+1)
		dst = append(dst, value...)
	}
	return binary.AppendVarint(dst, ts)
}

// isOps reports whether a view key's value is an ops value.
func isOps(v []byte) bool { return len(v) >= len(opsMagic) && string(v[:len(opsMagic)]) == opsMagic }

// errOps is returned for an ops value that does not parse.
var errOps = errors.New("lookup view: malformed merge operand")

// applyOps applies the records of the ops value ops (with its magic) to e,
// in order.
func applyOps(e *entityView, ops []byte) error {
	if !isOps(ops) {
		return errOps
	}
	src := ops[len(opsMagic):]
	for len(src) > 0 {
		l, w := binary.Uvarint(src)
		if w <= 0 || uint64(len(src)-w) < l {
			return errOps
		}
		key := src[w : w+int(l)]
		src = src[w+int(l):]
		l, w = binary.Uvarint(src)
		if w <= 0 || (l > 0 && uint64(len(src)-w) < l-1) {
			return errOps
		}
		var value []byte
		if l > 0 {
			value = src[w : w+int(l-1) : w+int(l-1)]
			src = src[w+int(l-1):]
		} else {
			src = src[w:]
		}
		ts, w := binary.Varint(src)
		if w <= 0 {
			return errOps
		}
		src = src[w:]
		rec, err := featurelog.ParseRaw(key, value)
		if err != nil {
			return fmt.Errorf("%w: %w", errOps, err)
		}
		applyOp(e, rec, ts)
	}
	return nil
}

// applyOp applies one parsed feature-log record, whose Kafka timestamp is
// ts (ms), to e: only the series of the tile's feature and source partition
// changes, the other partitions' tiles of the feature stay as they are.
func applyOp(e *entityView, rec featurelog.RawRecord, ts int64) {
	ref := rec.Ref
	i := e.index(string(ref.FeatureID), ref.SourcePartition) // does not escape: no allocation
	if i < 0 {
		i = e.add(string(ref.FeatureID), ref.SourcePartition)
	}
	seen := keys.IsSeen(ref.FeatureID)
	switch {
	case rec.Deleted && seen: // never published; markers are never deleted
	case rec.Deleted:
		e.series[i].DeleteTile(ref.Start)
	case seen:
		setSeen(&e.series[i], rec.Tile)
	default:
		e.series[i].SetTile(rec.Tile)
	}
	if ts > e.updated[i] {
		e.updated[i] = ts
	}
}

// viewMerge is ViewMerger's ValueMerger: it keeps copies of the operands
// and merges them in Finish.
type viewMerge struct {
	vals  [][]byte // in the order received
	older bool     // received by MergeOlder (vals newest first), else by MergeNewer
}

func newViewMerge(_, value []byte) (pebble.ValueMerger, error) {
	return &viewMerge{vals: [][]byte{append([]byte(nil), value...)}}, nil
}

func (m *viewMerge) MergeNewer(value []byte) error {
	m.vals = append(m.vals, append([]byte(nil), value...))
	return nil
}

func (m *viewMerge) MergeOlder(value []byte) error {
	m.older = true
	m.vals = append(m.vals, append([]byte(nil), value...))
	return nil
}

// Finish merges the operands, oldest first. With the oldest a view, or
// includesBase (nothing older exists: the entity's view starts empty), the
// result is the view with every operand applied; otherwise it is one ops
// value, the operands' records in order, for a later merge with the base.
func (m *viewMerge) Finish(includesBase bool) ([]byte, io.Closer, error) {
	vals := m.vals
	if m.older { // oldest first
		for i, j := 0, len(vals)-1; i < j; i, j = i+1, j-1 {
			vals[i], vals[j] = vals[j], vals[i]
		}
	}
	if isOps(vals[0]) && !includesBase {
		n := len(opsMagic)
		for _, v := range vals {
			if !isOps(v) {
				return nil, nil, errOps // a view newer than an operand: never written
			}
			n += len(v) - len(opsMagic)
		}
		out := make([]byte, 0, n)
		out = append(out, opsMagic...)
		for _, v := range vals {
			out = append(out, v[len(opsMagic):]...)
		}
		return out, nil, nil
	}
	var e entityView
	if !isOps(vals[0]) {
		if err := e.decode(vals[0]); err != nil {
			return nil, nil, fmt.Errorf("lookup view: merge base: %w", err)
		}
		vals = vals[1:]
	}
	for _, v := range vals {
		if err := applyOps(&e, v); err != nil {
			return nil, nil, err
		}
	}
	return e.encode(nil), nil, nil
}
