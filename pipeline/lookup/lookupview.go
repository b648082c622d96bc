package lookup

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/featurepipe/featurepipe/aggregations"
)

// appendIndexed appends e in the lookup cache's layout: like encode, but
// each series is length-prefixed, so that a lookup decodes only the
// features it asks for (a request for 2 of an entity's 7 features decodes
// 2 series, not 7).
//
// Layout: uvarint(n), n × (uvarint len, id, varint updated, uvarint len,
// series).
func (e *entityView) appendIndexed(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(e.ids)))
	var sbuf []byte
	for i, id := range e.ids {
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		dst = append(dst, id...)
		dst = binary.AppendVarint(dst, e.updated[i])
		sbuf = aggregations.AppendSeries(sbuf[:0], &e.series[i])
		dst = binary.AppendUvarint(dst, uint64(len(sbuf)))
		dst = append(dst, sbuf...)
	}
	return dst
}

// lookupView is one entity's view as a lookup reads it from the cache's
// indexed bytes (see appendIndexed): ids and update times parsed, each
// series decoded on first use. It aliases the bytes it parsed, which the
// cache never modifies. Reused through lookupViewPool: once warm, parsing
// and decoding allocate nothing.
type lookupView struct {
	ids     []string
	updated []int64 // ms
	raw     [][]byte
	series  []aggregations.Series
	decoded []bool
}

var lookupViewPool = sync.Pool{New: func() any { return new(lookupView) }}

// reset empties v, keeping its capacity (and its id strings, for reuse).
func (v *lookupView) reset() {
	v.ids, v.updated, v.raw, v.decoded = v.ids[:0], v.updated[:0], v.raw[:0], v.decoded[:0]
	for i := range v.series {
		v.series[i] = aggregations.Series{Tiles: v.series[i].Tiles[:0]}
	}
	v.series = v.series[:0]
}

// parse reads the indexed bytes of an entity into v, decoding no series.
func (v *lookupView) parse(src []byte) error {
	v.reset()
	n, w := binary.Uvarint(src)
	if w <= 0 {
		return aggregations.ErrCorrupt
	}
	src = src[w:]
	for range n {
		l, w := binary.Uvarint(src)
		if w <= 0 || uint64(len(src)-w) < l {
			return aggregations.ErrCorrupt
		}
		id := src[w : w+int(l)]
		src = src[w+int(l):]
		u, w := binary.Varint(src)
		if w <= 0 {
			return aggregations.ErrCorrupt
		}
		src = src[w:]
		sl, w := binary.Uvarint(src)
		if w <= 0 || uint64(len(src)-w) < sl {
			return aggregations.ErrCorrupt
		}
		k := len(v.ids)
		if k < cap(v.ids) && v.ids[:k+1][k] == string(id) {
			v.ids = v.ids[:k+1] // same id as the previous entity's: keep its string
		} else {
			v.ids = append(v.ids, string(id))
		}
		v.updated = append(v.updated, u)
		v.raw = append(v.raw, src[w:w+int(sl)])
		v.decoded = append(v.decoded, false)
		if k < cap(v.series) {
			v.series = v.series[:k+1]
		} else {
			v.series = append(v.series, aggregations.Series{})
		}
		src = src[w+int(sl):]
	}
	if len(src) != 0 {
		return aggregations.ErrCorrupt
	}
	return nil
}

func (v *lookupView) index(id string) int {
	for i, x := range v.ids {
		if x == id {
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
