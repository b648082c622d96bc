package aggregations

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrCorrupt is wrapped by every decode error.
var ErrCorrupt = errors.New("aggregations: corrupt encoding")

// seriesVersion is the first byte of an encoded Series. Decoders reject other values.
const seriesVersion byte = 1

// Flags of an encoded tile: which fields follow. Absent fields are zero.
const (
	flagCount byte = 1 << iota
	flagSum
	flagMin
	flagMax
	flagLast
	flagLastTS
	flagLastSeq
	flagPending
)

// AppendTile appends the binary encoding of t to dst and returns the extended slice.
//
// Layout: a flags byte; Start as a zigzag varint; then, in this order, only the
// fields whose flag is set (the non-zero ones): Count (varint), Sum, Min, Max, Last
// (8-byte little-endian IEEE 754; -0 counts as non-zero), LastTS (varint, relative to
// Start), LastSeq (varint), and the pending events (uvarint count, then per event TS
// relative to Start, Seq as varints and Value as 8 bytes). A typical non-empty tile
// takes about 50 bytes, an empty one 1 + len(varint Start).
func AppendTile(dst []byte, t Tile) []byte {
	flags := irFlags(t.IR)
	if len(t.Pending) > 0 {
		flags |= flagPending
	}
	dst = append(dst, flags)
	dst = binary.AppendVarint(dst, t.Start)
	dst = appendIRFields(dst, flags, t.IR, t.Start)
	if flags&flagPending != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(t.Pending)))
		for _, p := range t.Pending {
			dst = binary.AppendVarint(dst, p.TS-t.Start)
			dst = binary.AppendVarint(dst, p.Seq)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(p.Value))
		}
	}
	return dst
}

// DecodeTile decodes one tile from the start of src and returns the bytes after it.
// Errors wrap ErrCorrupt. The returned Pending is a new slice.
func DecodeTile(src []byte) (t Tile, rest []byte, err error) {
	d := decoder{src: src}
	d.tile(&t, nil)
	if d.err != nil {
		return Tile{}, src, fmt.Errorf("decode tile: %w", d.err)
	}
	return t, d.src, nil
}

// AppendSeries appends the binary encoding of s to dst and returns the extended
// slice: a version byte, Base (a flags byte and its non-zero fields, as in
// AppendTile), the number of tiles as a uvarint, then each tile as AppendTile writes
// it.
func AppendSeries(dst []byte, s *Series) []byte {
	dst = append(dst, seriesVersion)
	flags := irFlags(s.Base)
	dst = append(dst, flags)
	dst = appendIRFields(dst, flags, s.Base, 0)
	dst = binary.AppendUvarint(dst, uint64(len(s.Tiles)))
	for _, t := range s.Tiles {
		dst = AppendTile(dst, t)
	}
	return dst
}

// DecodeSeries resets s and decodes into it a series from the start of src,
// returning the bytes after it. It reuses the capacity of s.Tiles and of their
// Pending slices, so tiles previously returned by s must not be retained. It
// rejects tiles out of order, duplicated or at BaseStart. Errors wrap ErrCorrupt;
// on error s is left empty.
func DecodeSeries(src []byte, s *Series) (rest []byte, err error) {
	old := s.Tiles[:cap(s.Tiles)]
	*s = Series{Tiles: s.Tiles[:0]}
	d := decoder{src: src}
	if v := d.byte("version"); d.err == nil && v != seriesVersion {
		d.fail("unknown series version %d", v)
	}
	flags := d.byte("base flags")
	if flags&flagPending != 0 {
		d.fail("base has pending events")
	}
	d.irFields(flags, &s.Base, 0)
	n := d.uvarint("tile count")
	// Every tile takes at least two bytes: refuse counts the input cannot hold
	// before allocating for them.
	if d.err == nil && n > uint64(len(d.src)/2) {
		d.fail("tile count %d exceeds the %d bytes left", n, len(d.src))
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var pending []Event
		if j := len(s.Tiles); j < len(old) {
			pending = old[j].Pending[:0]
		}
		var t Tile
		d.tile(&t, pending)
		switch {
		case d.err != nil:
		case t.Start == BaseStart:
			d.fail("tile %d has the base start", i)
		case len(s.Tiles) > 0 && t.Start <= s.Tiles[len(s.Tiles)-1].Start:
			d.fail("tile %d start %d not after %d", i, t.Start, s.Tiles[len(s.Tiles)-1].Start)
		}
		s.Tiles = append(s.Tiles, t)
	}
	if d.err != nil {
		clear(s.Tiles)
		*s = Series{Tiles: s.Tiles[:0]}
		return src, fmt.Errorf("decode series: %w", d.err)
	}
	return d.src, nil
}

func irFlags(ir IR) byte {
	var f byte
	if ir.Count != 0 {
		f |= flagCount
	}
	if math.Float64bits(ir.Sum) != 0 {
		f |= flagSum
	}
	if math.Float64bits(ir.Min) != 0 {
		f |= flagMin
	}
	if math.Float64bits(ir.Max) != 0 {
		f |= flagMax
	}
	if math.Float64bits(ir.Last) != 0 {
		f |= flagLast
	}
	if ir.LastTS != 0 {
		f |= flagLastTS
	}
	if ir.LastSeq != 0 {
		f |= flagLastSeq
	}
	return f
}

// appendIRFields writes the fields flagged in flags; LastTS is written relative to ref.
func appendIRFields(dst []byte, flags byte, ir IR, ref int64) []byte {
	if flags&flagCount != 0 {
		dst = binary.AppendVarint(dst, ir.Count)
	}
	for _, f := range [...]struct {
		flag byte
		v    float64
	}{{flagSum, ir.Sum}, {flagMin, ir.Min}, {flagMax, ir.Max}, {flagLast, ir.Last}} {
		if flags&f.flag != 0 {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(f.v))
		}
	}
	if flags&flagLastTS != 0 {
		dst = binary.AppendVarint(dst, ir.LastTS-ref)
	}
	if flags&flagLastSeq != 0 {
		dst = binary.AppendVarint(dst, ir.LastSeq)
	}
	return dst
}

// decoder reads from src and keeps the first error; reads after an error return zero.
type decoder struct {
	src []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", ErrCorrupt, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) advance(n int) {
	d.src = d.src[n:]
	d.off += n
}

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.src) == 0 {
		d.fail("truncated %s", what)
		return 0
	}
	b := d.src[0]
	d.advance(1)
	return b
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.src)
	if n <= 0 {
		d.fail("bad varint %s", what)
		return 0
	}
	d.advance(n)
	return v
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.src)
	if n <= 0 {
		d.fail("bad uvarint %s", what)
		return 0
	}
	d.advance(n)
	return v
}

func (d *decoder) float(what string) float64 {
	if d.err != nil {
		return 0
	}
	if len(d.src) < 8 {
		d.fail("truncated %s", what)
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.src))
	d.advance(8)
	return v
}

func (d *decoder) irFields(flags byte, ir *IR, ref int64) {
	if flags&flagCount != 0 {
		ir.Count = d.varint("count")
	}
	if flags&flagSum != 0 {
		ir.Sum = d.float("sum")
	}
	if flags&flagMin != 0 {
		ir.Min = d.float("min")
	}
	if flags&flagMax != 0 {
		ir.Max = d.float("max")
	}
	if flags&flagLast != 0 {
		ir.Last = d.float("last")
	}
	if flags&flagLastTS != 0 {
		ir.LastTS = ref + d.varint("last ts")
	}
	if flags&flagLastSeq != 0 {
		ir.LastSeq = d.varint("last seq")
	}
	if d.err == nil && ir.Count <= 0 && *ir != (IR{}) {
		d.fail("count %d with non-empty fields", ir.Count)
	}
}

// tile decodes one tile into t, appending pending events to pending (reused storage).
func (d *decoder) tile(t *Tile, pending []Event) {
	flags := d.byte("flags")
	t.Start = d.varint("start")
	d.irFields(flags, &t.IR, t.Start)
	if flags&flagPending == 0 || d.err != nil {
		return
	}
	n := d.uvarint("pending count")
	// Every pending event takes at least 10 bytes.
	if d.err == nil && (n == 0 || n > uint64(len(d.src)/10)) {
		d.fail("pending count %d does not fit the %d bytes left", n, len(d.src))
		return
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var e Event
		e.TS = t.Start + d.varint("pending ts")
		e.Seq = d.varint("pending seq")
		e.Value = d.float("pending value")
		pending = append(pending, e)
	}
	t.Pending = pending
}
