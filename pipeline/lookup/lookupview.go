package lookup

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
)

// lookupView is one entity's view as a lookup reads it from the view
// layout's bytes (see entityView.encode): ids and update times parsed, each
// series decoded on first use; a feature has one entry per source partition
// that published it, adjacent (see entityView). It aliases the bytes it parsed (ids and raw
// series included), which the cache never modifies. Reused through
// lookupViewPool: once warm, parsing and decoding allocate nothing.
type lookupView struct {
	ids     [][]byte // alias the parsed bytes
	updated []int64  // ms
	raw     [][]byte
	series  []aggregations.Series
	decoded []bool

	// derived are the activations of derived features being evaluated,
	// one per nesting depth (see foldDef).
	derived []config.DerivedInput

	kbuf []byte // the view key being read (see Service.view)
	vbuf []byte // the value read from Pebble when the cache is disabled
}

var lookupViewPool = sync.Pool{New: func() any { return new(lookupView) }}

// reset empties v, keeping its capacity. The series keep their tiles'
// capacity for the next decode (DecodeSeries resets a series first).
func (v *lookupView) reset() {
	v.ids, v.updated, v.raw, v.decoded = v.ids[:0], v.updated[:0], v.raw[:0], v.decoded[:0]
	v.series = v.series[:0]
}

// parse reads the view bytes of an entity into v, decoding no series.
func (v *lookupView) parse(src []byte) error {
	v.reset()
	n, w := binary.Uvarint(src)
	if w <= 0 {
		return aggregations.ErrCorrupt
	}
	src = src[w:]
	for range n {
		id, _, u, raw, rest, err := readEntry(src)
		if err != nil {
			return err
		}
		v.ids = append(v.ids, id)
		v.updated = append(v.updated, u)
		v.raw = append(v.raw, raw)
		v.decoded = append(v.decoded, false)
		if k := len(v.series); k < cap(v.series) {
			v.series = v.series[:k+1]
		} else {
			v.series = append(v.series, aggregations.Series{})
		}
		src = rest
	}
	if len(src) != 0 {
		return aggregations.ErrCorrupt
	}
	return nil
}

// index returns the position of the first entry of feature id in v, or -1
// (always for an empty view: an entity the feature log never mentioned).
func (v *lookupView) index(id string) int {
	for i, x := range v.ids {
		if string(x) == id { // no allocation: the conversion is only compared
			return i
		}
	}
	return -1
}

// seriesAt returns series i, decoding it on first use.
func (v *lookupView) seriesAt(i int) (*aggregations.Series, error) {
	if !v.decoded[i] {
		rest, err := aggregations.DecodeSeries(v.raw[i], &v.series[i])
		if err != nil {
			return nil, fmt.Errorf("feature %s: %w", v.ids[i], err)
		}
		if len(rest) != 0 {
			return nil, fmt.Errorf("feature %s: %w: %d bytes after the series", v.ids[i], aggregations.ErrCorrupt, len(rest))
		}
		v.decoded[i] = true
	}
	return &v.series[i], nil
}

// read is the value of feature id with window w as of T, before
// finalizing: the window folded over the series of every source partition
// that published the feature, merged (aggregations.IR.Merge: counts and sums
// add, last is the latest (ts, Seq), Seq ordering partitions as
// aggregations.Seq does). found is false when v has no series of id (the
// feature log never mentioned it for this entity); updated is the latest
// update time of those series (ms).
//
// Cost: the scan of v's entries up to id's, then one series decode (first
// use) and fold per partition; with one partition, exactly what a single
// series costs. It allocates nothing once v is warm.
func (v *lookupView) read(id string, w aggregations.Window, T int64) (ir aggregations.IR, updated int64, found bool, err error) {
	for i, x := range v.ids {
		if string(x) != id { // no allocation: the conversion is only compared
			if found {
				break // the entries of id are adjacent
			}
			continue
		}
		sr, err := v.seriesAt(i)
		if err != nil {
			return aggregations.IR{}, 0, true, err
		}
		if !found {
			ir, updated, found = sr.Read(w, T), v.updated[i], true
			continue
		}
		ir.Merge(sr.Read(w, T))
		updated = max(updated, v.updated[i])
	}
	return ir, updated, found, nil
}
