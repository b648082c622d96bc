package aggregations

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrCorrupt is wrapped by every decode error.
var ErrCorrupt = errors.New("aggregations: corrupt encoding")

// seriesVersion is the first byte of an encoded Series. Decoders reject other values.
const seriesVersion byte = 1

// Flags of an encoded tile: which fields follow. Absent fields are zero, except
// the derived ones of a non-empty IR (see flagMean and flagFirst).
//
// The first eight fit the single flags byte of the original format. The others
// are written after flagsExtended, a byte no original encoding can start with
// (it has fields but no Count, which the decoder always rejected), followed by
// all the flags as a uvarint. An IR that needs none of the new fields is still
// written in the original form, so tiles written before the new fields existed
// and tiles of the original kinds read and write exactly as before.
const (
	flagCount uint64 = 1 << iota
	flagSum
	flagMin
	flagMax
	flagLast
	flagLastTS
	flagLastSeq
	flagPending
	// flagMean: Mean is written because it differs from Sum/Count (otherwise
	// a non-empty IR's Mean is Sum/Count, bit for bit).
	flagMean
	// flagM2: M2 is non-zero.
	flagM2
	// flagFirst: First, FirstTS and FirstSeq are written because they differ
	// from Last, LastTS and LastSeq (otherwise a non-empty IR's are those).
	flagFirst
	// flagHLL: an ApproxDistinct sketch follows.
	flagHLL
	// flagQuantiles: an ApproxPercentile sketch follows.
	flagQuantiles
	// flagFirstK, flagLastK: the event list of a FirstK or LastK IR follows.
	flagFirstK
	flagLastK
	// flagStrings: the IR keeps strings (a window made WithStrings): its
	// Last and First strings follow, and so does each listed event's.
	flagStrings
	// flagPendingStrings: each pending event's Str follows it (set only
	// when one is non-empty).
	flagPendingStrings
	// flagTopK: the value counts of a TopK IR follow.
	flagTopK
	// flagBuckets: the IR's buckets follow (a window made WithBuckets):
	// their number (uvarint), then per bucket, by increasing key, the key
	// (see appendString), the sub-IR's flags and its fields, as a tile's.
	flagBuckets
	// flagPendingBuckets: each pending event's Bucket follows it (after its
	// Str, if any; set only when one is non-empty).
	flagPendingBuckets

	flagsKnown = flagPendingBuckets<<1 - 1
)

// flagsExtended introduces extended flags (see flagCount).
const flagsExtended byte = 0x7E

// appendFlags writes flags as one byte when they fit the original format,
// otherwise as flagsExtended and a uvarint.
func appendFlags(dst []byte, flags uint64) []byte {
	if flags <= 0xFF {
		return append(dst, byte(flags))
	}
	return binary.AppendUvarint(append(dst, flagsExtended), flags)
}

// AppendTile appends the binary encoding of t to dst and returns the extended slice.
//
// Layout: the flags (one byte, or flagsExtended and a uvarint, see flagCount);
// Start as a zigzag varint; then, in this order, only the fields whose flag is set
// (the non-zero or non-derived ones): Count (varint), Sum, Min, Max, Last (8-byte
// little-endian IEEE 754; -0 counts as non-zero), LastTS (varint, relative to
// Start), LastSeq (varint), Mean, M2, First (8 bytes each), FirstTS (varint,
// relative to Start), FirstSeq (varint), the Last and First strings of a
// string IR (flagStrings, see appendString), the HyperLogLog sketch, the
// quantile sketch (see appendHLL and appendQuantiles), the event list (see
// appendKList), the value counts (see appendTopK), the buckets of a
// bucketed IR (flagBuckets), and the pending events (uvarint count, then per
// event TS relative to Start, Seq as varints, Value as 8 bytes and, with
// flagPendingStrings, Str, with flagPendingBuckets, Bucket). Number features never set the string flags: their
// tiles encode exactly as before strings existed. A typical non-empty tile of an exact kind takes about 50 to 80 bytes,
// an empty one 1 + len(varint Start).
func AppendTile(dst []byte, t Tile) []byte { return appendTile(dst, &t) }

// appendTile is AppendTile of *t: a series' tiles are appended in place, not
// copied (a Tile is 176 bytes).
func appendTile(dst []byte, t *Tile) []byte {
	flags := irFlags(&t.IR)
	if len(t.Pending) > 0 {
		flags |= flagPending
		for _, p := range t.Pending {
			if p.Str != "" {
				flags |= flagPendingStrings
			}
			if p.Bucket != "" {
				flags |= flagPendingBuckets
			}
		}
	}
	dst = appendFlags(dst, flags)
	dst = binary.AppendVarint(dst, t.Start)
	dst = appendIRFields(dst, flags, &t.IR, t.Start)
	if flags&flagPending != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(t.Pending)))
		for _, p := range t.Pending {
			dst = binary.AppendVarint(dst, p.TS-t.Start)
			dst = binary.AppendVarint(dst, p.Seq)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(p.Value))
			if flags&flagPendingStrings != 0 {
				dst = appendString(dst, p.Str)
			}
			if flags&flagPendingBuckets != 0 {
				dst = appendString(dst, p.Bucket)
			}
		}
	}
	return dst
}

// appendString writes s as its length (uvarint) and its bytes.
func appendString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
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
	flags := irFlags(&s.Base)
	dst = appendFlags(dst, flags)
	dst = appendIRFields(dst, flags, &s.Base, 0)
	dst = binary.AppendUvarint(dst, uint64(len(s.Tiles)))
	for i := range s.Tiles {
		dst = appendTile(dst, &s.Tiles[i])
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
	flags := d.flags("base flags")
	if flags&(flagPending|flagPendingStrings|flagPendingBuckets) != 0 {
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

func irFlags(ir *IR) uint64 {
	var f uint64
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
	if ir.Count != 0 && math.Float64bits(ir.Mean) != math.Float64bits(ir.Sum/float64(ir.Count)) {
		f |= flagMean
	}
	if math.Float64bits(ir.M2) != 0 {
		f |= flagM2
	}
	if ir.Count != 0 && (math.Float64bits(ir.First) != math.Float64bits(ir.Last) || ir.FirstTS != ir.LastTS || ir.FirstSeq != ir.LastSeq) {
		f |= flagFirst
	}
	if ir.hll != nil {
		f |= flagHLL
	}
	if ir.qs != nil {
		f |= flagQuantiles
	}
	if ir.s != nil {
		f |= flagStrings
	}
	if ir.ks != nil {
		if ir.ks.last {
			f |= flagLastK
		} else {
			f |= flagFirstK
		}
	}
	if ir.tk != nil {
		f |= flagTopK
	}
	if ir.bk != nil {
		f |= flagBuckets
	}
	return f
}

// appendFloatIf appends v as 8 little-endian bytes (IEEE 754) when on.
func appendFloatIf(dst []byte, on bool, v float64) []byte {
	if on {
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
	}
	return dst
}

// appendIRFields writes the fields flagged in flags; LastTS is written relative to ref.
func appendIRFields(dst []byte, flags uint64, ir *IR, ref int64) []byte {
	if flags&flagCount != 0 {
		dst = binary.AppendVarint(dst, ir.Count)
	}
	// One call per field, not a loop over an array of them: the array was
	// built on every call (a third of AppendSeries' time).
	dst = appendFloatIf(dst, flags&flagSum != 0, ir.Sum)
	dst = appendFloatIf(dst, flags&flagMin != 0, ir.Min)
	dst = appendFloatIf(dst, flags&flagMax != 0, ir.Max)
	dst = appendFloatIf(dst, flags&flagLast != 0, ir.Last)
	if flags&flagLastTS != 0 {
		dst = binary.AppendVarint(dst, ir.LastTS-ref)
	}
	if flags&flagLastSeq != 0 {
		dst = binary.AppendVarint(dst, ir.LastSeq)
	}
	dst = appendFloatIf(dst, flags&flagMean != 0, ir.Mean)
	dst = appendFloatIf(dst, flags&flagM2 != 0, ir.M2)
	if flags&flagFirst != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(ir.First))
		dst = binary.AppendVarint(dst, ir.FirstTS-ref)
		dst = binary.AppendVarint(dst, ir.FirstSeq)
	}
	if flags&flagStrings != 0 {
		dst = appendString(dst, ir.s.last)
		dst = appendString(dst, ir.s.first)
	}
	if flags&flagHLL != 0 {
		dst = appendHLL(dst, ir.hll)
	}
	if flags&flagQuantiles != 0 {
		dst = appendQuantiles(dst, ir.qs)
	}
	if flags&(flagFirstK|flagLastK) != 0 {
		dst = appendKList(dst, ir.ks, ref, flags&flagStrings != 0)
	}
	if flags&flagTopK != 0 {
		dst = appendTopK(dst, ir.tk)
	}
	if flags&flagBuckets != 0 {
		keys := make([]string, 0, len(ir.bk.m))
		for k := range ir.bk.m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = binary.AppendUvarint(dst, uint64(len(keys)))
		for _, k := range keys {
			sub := ir.bk.m[k]
			dst = appendString(dst, k)
			sf := irFlags(sub)
			dst = appendFlags(dst, sf)
			dst = appendIRFields(dst, sf, sub, ref)
		}
	}
	return dst
}

// appendTopK writes the value counts of a TopK IR: its error (uvarint, 0
// while exact) and number of counters (uvarint), then each counter in
// value order: its value (a string, see appendString, for a string IR;
// otherwise 8 bytes) and its count (uvarint).
func appendTopK(dst []byte, t *topK) []byte {
	dst = binary.AppendUvarint(dst, uint64(t.err))
	dst = binary.AppendUvarint(dst, uint64(len(t.cs)))
	for _, c := range t.cs {
		if t.strs {
			dst = appendString(dst, c.s)
		} else {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(c.v))
		}
		dst = binary.AppendUvarint(dst, uint64(c.n))
	}
	return dst
}

// appendKList writes the event list of a FirstK or LastK IR: k and the
// number of events (uvarints), then each event, in list order, as its TS
// relative to ref and its Seq (varints) and its Value (8 bytes), and, when
// strs (the IR keeps strings), its Str (see appendString).
func appendKList(dst []byte, l *kList, ref int64, strs bool) []byte {
	dst = binary.AppendUvarint(dst, uint64(l.k))
	dst = binary.AppendUvarint(dst, uint64(len(l.evs)))
	for i, e := range l.evs {
		dst = binary.AppendVarint(dst, e.TS-ref)
		dst = binary.AppendVarint(dst, e.Seq)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(e.Value))
		if strs {
			dst = appendString(dst, l.str(i))
		}
	}
	return dst
}

// appendHLL writes a HyperLogLog sketch: its precision byte (hllP) and the
// number of exact hashes as a uvarint. In exact mode (that number is 1 to
// DistinctExactMax) the sorted hashes follow, each as a uvarint (after the
// first, the increase over the previous one). In register mode (0 hashes) the
// number k of non-zero registers follows as a uvarint, then, when k <=
// hllSparseMax, each non-zero register as its index (uvarint; after the first,
// the increase over the previous index) and its value (one byte); otherwise
// all hllM registers, one byte each.
func appendHLL(dst []byte, s *hll) []byte {
	dst = append(dst, hllP)
	if !s.registers() {
		dst = binary.AppendUvarint(dst, uint64(len(s.exact)))
		var prev uint64
		for _, h := range s.exact {
			dst = binary.AppendUvarint(dst, h-prev)
			prev = h
		}
		return dst
	}
	dst = binary.AppendUvarint(dst, 0)
	k := s.nonZero()
	dst = binary.AppendUvarint(dst, uint64(k))
	if k > hllSparseMax {
		return append(dst, s.dense...)
	}
	var prev uint32
	emit := func(idx uint32, rho uint8) {
		dst = binary.AppendUvarint(dst, uint64(idx-prev))
		dst = append(dst, rho)
		prev = idx
	}
	if s.dense != nil { // cannot happen (dense only past hllSparseMax), but stay correct
		for i, r := range s.dense {
			if r != 0 {
				emit(uint32(i), r)
			}
		}
		return dst
	}
	for _, e := range s.sparse {
		emit(e>>8, uint8(e))
	}
	return dst
}

// appendQuantiles writes a quantile sketch: q (8 bytes), the zero count
// (uvarint), then the positive and the negative store, each as a uvarint
// number of buckets followed by each bucket's key (zigzag varint; after the
// first, the increase over the previous key as a uvarint) and count (uvarint).
func appendQuantiles(dst []byte, s *quantiles) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s.q))
	dst = binary.AppendUvarint(dst, s.zero)
	for _, store := range [2][]bucket{s.pos, s.neg} {
		dst = binary.AppendUvarint(dst, uint64(len(store)))
		for i, b := range store {
			if i == 0 {
				dst = binary.AppendVarint(dst, int64(b.key))
			} else {
				dst = binary.AppendUvarint(dst, uint64(int64(b.key)-int64(store[i-1].key)))
			}
			dst = binary.AppendUvarint(dst, b.n)
		}
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

// flags reads a flags byte, or flagsExtended and the uvarint after it.
// string decodes a string written by appendString.
func (d *decoder) string(what string) string {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.src)) {
		d.fail("%s length %d exceeds the %d bytes left", what, n, len(d.src))
		return ""
	}
	s := string(d.src[:n])
	d.advance(int(n))
	return s
}

func (d *decoder) flags(what string) uint64 {
	b := d.byte(what)
	if d.err != nil || b != flagsExtended {
		return uint64(b)
	}
	f := d.uvarint(what)
	switch {
	case d.err != nil:
	case f <= 0xFF:
		d.fail("extended %s %#x fit one byte", what, f)
	case f&^flagsKnown != 0:
		d.fail("unknown %s %#x", what, f&^flagsKnown)
	}
	return f
}

func (d *decoder) irFields(flags uint64, ir *IR, ref int64) {
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
	if flags&flagMean != 0 {
		ir.Mean = d.float("mean")
	} else if ir.Count > 0 {
		ir.Mean = ir.Sum / float64(ir.Count)
	}
	if flags&flagM2 != 0 {
		ir.M2 = d.float("m2")
	}
	if flags&flagFirst != 0 {
		ir.First = d.float("first")
		ir.FirstTS = ref + d.varint("first ts")
		ir.FirstSeq = d.varint("first seq")
	} else if ir.Count > 0 {
		ir.First, ir.FirstTS, ir.FirstSeq = ir.Last, ir.LastTS, ir.LastSeq
	}
	if flags&flagStrings != 0 {
		ir.s = &strPart{last: d.string("last string"), first: d.string("first string")}
	}
	if flags&flagHLL != 0 {
		ir.hll = d.hll()
	}
	if flags&flagQuantiles != 0 {
		ir.qs = d.quantiles()
	}
	switch flags & (flagFirstK | flagLastK) {
	case 0:
	case flagFirstK | flagLastK:
		d.fail("both a first_k and a last_k list")
	default:
		ir.ks = d.kList(flags&flagLastK != 0, ref, flags&flagStrings != 0)
	}
	if flags&flagTopK != 0 {
		ir.tk = d.topK(flags&flagStrings != 0, ir.Count)
	}
	if flags&flagBuckets != 0 {
		ir.bk = d.bucketSet(ir.Count, ref)
	}
	switch {
	case d.err != nil:
	case ir.Count <= 0 && *ir != (IR{}), ir.Count <= 0 && flags&flagStrings != 0:
		d.fail("count %d with non-empty fields", ir.Count)
	case !(ir.M2 >= 0):
		d.fail("m2 %v is negative", ir.M2)
	case ir.hll != nil && ir.qs != nil, ir.ks != nil && (ir.hll != nil || ir.qs != nil),
		ir.tk != nil && (ir.hll != nil || ir.qs != nil || ir.ks != nil):
		d.fail("two sketches")
	case ir.ks != nil && int64(len(ir.ks.evs)) != min(int64(ir.ks.k), ir.Count):
		d.fail("%d listed events in an IR of %d with k %d", len(ir.ks.evs), ir.Count, ir.ks.k)
	case ir.qs != nil && ir.qs.total() != uint64(ir.Count):
		d.fail("quantile sketch of %d values in an IR of %d", ir.qs.total(), ir.Count)
	}
}

// hll decodes a sketch written by appendHLL.
func (d *decoder) hll() *hll {
	if p := d.byte("hll precision"); d.err == nil && p != hllP {
		d.fail("hll precision %d, want %d", p, hllP)
	}
	if n := d.uvarint("hll hashes"); d.err != nil || n > 0 {
		return d.hllExact(n)
	}
	k := d.uvarint("hll registers")
	if d.err != nil {
		return nil
	}
	if k == 0 || k > hllM {
		d.fail("hll with %d non-zero registers", k)
		return nil
	}
	s := &hll{}
	if k > hllSparseMax {
		if len(d.src) < hllM {
			d.fail("truncated hll registers")
			return nil
		}
		s.dense = slices.Clone(d.src[:hllM])
		d.advance(hllM)
		n := 0
		for _, r := range s.dense {
			if r > hllQ+1 {
				d.fail("hll register %d out of range", r)
				return nil
			}
			if r != 0 {
				n++
			}
		}
		if uint64(n) != k {
			d.fail("hll has %d non-zero registers, header says %d", n, k)
		}
		return s
	}
	// Every sparse register takes at least two bytes.
	if k > uint64(len(d.src)/2) {
		d.fail("hll register count %d exceeds the %d bytes left", k, len(d.src))
		return nil
	}
	s.sparse = make([]uint32, 0, k)
	var idx uint64
	for i := uint64(0); i < k && d.err == nil; i++ {
		delta := d.uvarint("hll index")
		rho := d.byte("hll register")
		idx += delta
		switch {
		case d.err != nil:
		case i > 0 && delta == 0, idx >= hllM:
			d.fail("hll index %d out of order or range", idx)
		case rho == 0 || rho > hllQ+1:
			d.fail("hll register %d out of range", rho)
		default:
			s.sparse = append(s.sparse, uint32(idx)<<8|uint32(rho))
		}
	}
	return s
}

// hllExact decodes the n hashes of an exact-mode sketch written by appendHLL.
func (d *decoder) hllExact(n uint64) *hll {
	if d.err != nil {
		return nil
	}
	// Every hash takes at least one byte.
	if n > DistinctExactMax || n > uint64(len(d.src)) {
		d.fail("hll with %d exact hashes (at most %d, %d bytes left)", n, DistinctExactMax, len(d.src))
		return nil
	}
	s := &hll{exact: make([]uint64, 0, n)}
	var h uint64
	for i := uint64(0); i < n && d.err == nil; i++ {
		delta := d.uvarint("hll hash")
		switch {
		case d.err != nil:
		case i > 0 && (delta == 0 || h+delta < h):
			d.fail("hll hashes out of order")
		default:
			h += delta
			s.exact = append(s.exact, h)
		}
	}
	return s
}

// kList decodes an event list written by appendKList.
func (d *decoder) kList(last bool, ref int64, strs bool) *kList {
	k := d.uvarint("k")
	n := d.uvarint("listed events")
	switch {
	case d.err != nil:
		return nil
	case k < 1 || k > MaxK:
		d.fail("k %d not between 1 and %d", k, MaxK)
		return nil
	case n < 1 || n > k || n > uint64(len(d.src)/10): // every event takes at least 10 bytes
		d.fail("%d listed events (k %d, %d bytes left)", n, k, len(d.src))
		return nil
	}
	l := &kList{k: int(k), last: last, evs: make([]kEvent, 0, n)}
	if strs {
		l.strs = make([]string, 0, n)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var e kEvent
		var s string
		e.TS = ref + d.varint("listed ts")
		e.Seq = d.varint("listed seq")
		e.Value = d.float("listed value")
		if strs {
			s = d.string("listed string")
		}
		if d.err == nil && i > 0 && l.before(&e, s, &l.evs[i-1], l.str(int(i-1))) {
			d.fail("listed events out of order")
		}
		l.evs = append(l.evs, e)
		if strs {
			l.strs = append(l.strs, s)
		}
	}
	return l
}

// topK decodes the value counts written by appendTopK for an IR of count
// events, checking the invariants of topK.
func (d *decoder) topK(strs bool, count int64) *topK {
	e := d.uvarint("top_k error")
	n := d.uvarint("top_k counters")
	switch {
	case d.err != nil:
		return nil
	case n > TopKExactMax || n > uint64(len(d.src)/2): // every counter takes at least 2 bytes
		d.fail("%d top_k counters (at most %d, %d bytes left)", n, TopKExactMax, len(d.src))
		return nil
	case e > uint64(count):
		d.fail("top_k error %d in an IR of %d", e, count)
		return nil
	}
	t := &topK{strs: strs, err: int64(e), cs: make([]topCounter, 0, n)}
	var sum uint64
	for i := uint64(0); i < n && d.err == nil; i++ {
		var c topCounter
		if strs {
			c.s = d.string("top_k value")
		} else {
			c.v = d.float("top_k value")
		}
		cn := d.uvarint("top_k count")
		switch {
		case d.err != nil:
		case cn == 0 || cn > uint64(count):
			d.fail("top_k count %d in an IR of %d", cn, count)
		case i > 0 && t.compare(&t.cs[i-1], &c) >= 0:
			d.fail("top_k values out of order")
		case !strs && (math.IsNaN(c.v) || math.Float64bits(c.v) == 1<<63):
			d.fail("top_k value %v", c.v)
		default:
			c.n = int64(cn)
			sum += cn
			t.cs = append(t.cs, c)
		}
	}
	switch {
	case d.err != nil:
	case e == 0 && sum != uint64(count):
		d.fail("exact top_k counts add up to %d in an IR of %d", sum, count)
	case e > 0 && (sum > uint64(count) || e > (uint64(count)-sum)/(TopKKept+1)):
		d.fail("top_k error %d beyond the bound for counts of %d in an IR of %d", e, sum, count)
	}
	return t
}

// quantiles decodes a sketch written by appendQuantiles.
func (d *decoder) quantiles() *quantiles {
	s := &quantiles{q: d.float("quantile")}
	if d.err == nil && !(s.q > 0 && s.q < 1) {
		d.fail("quantile %v not between 0 and 1", s.q)
	}
	s.zero = d.uvarint("zero count")
	s.pos = d.buckets()
	s.neg = d.buckets()
	return s
}

// buckets decodes one store of a quantile sketch.
func (d *decoder) buckets() []bucket {
	n := d.uvarint("bucket count")
	// Every bucket takes at least two bytes.
	if d.err != nil || n == 0 {
		return nil
	}
	if n > uint64(len(d.src)/2) {
		d.fail("bucket count %d exceeds the %d bytes left", n, len(d.src))
		return nil
	}
	out := make([]bucket, 0, n)
	var key int64
	for i := uint64(0); i < n && d.err == nil; i++ {
		if i == 0 {
			key = d.varint("bucket key")
		} else {
			delta := d.uvarint("bucket key")
			if d.err == nil && (delta == 0 || delta > math.MaxUint32) {
				d.fail("bucket key step %d", delta)
			}
			key += int64(delta)
		}
		c := d.uvarint("bucket count")
		switch {
		case d.err != nil:
		case key < math.MinInt32 || key > math.MaxInt32:
			d.fail("bucket key %d out of range", key)
		case c == 0:
			d.fail("empty bucket")
		default:
			out = append(out, bucket{int32(key), c})
		}
	}
	return out
}

// tile decodes one tile into t, appending pending events to pending (reused storage).
func (d *decoder) tile(t *Tile, pending []Event) {
	flags := d.flags("flags")
	if flags&(flagPendingStrings|flagPendingBuckets) != 0 && flags&flagPending == 0 {
		d.fail("pending strings or buckets without pending events")
	}
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
		if flags&flagPendingStrings != 0 {
			e.Str = d.string("pending string")
		}
		if flags&flagPendingBuckets != 0 {
			e.Bucket = d.string("pending bucket")
		}
		pending = append(pending, e)
	}
	t.Pending = pending
}

// bucketSet decodes the buckets written by appendIRFields for an IR of count
// events: keys strictly increasing, each sub-IR non-empty and without
// buckets or pending flags, their counts adding up to count.
func (d *decoder) bucketSet(count int64, ref int64) *bucketSet {
	n := d.uvarint("bucket count")
	switch {
	case d.err != nil:
		return nil
	case n == 0 || n > BucketsMax+1 || n > uint64(len(d.src)/3): // a bucket takes at least 3 bytes
		d.fail("%d buckets (at most %d, %d bytes left)", n, BucketsMax+1, len(d.src))
		return nil
	}
	b := &bucketSet{m: make(map[string]*IR, n)}
	var prev string
	var total int64
	for i := uint64(0); i < n && d.err == nil; i++ {
		key := d.string("bucket key")
		sf := d.flags("bucket flags")
		if d.err != nil {
			return nil
		}
		if sf&(flagBuckets|flagPending|flagPendingStrings|flagPendingBuckets) != 0 {
			d.fail("bucket %q has nested buckets or pending events", key)
			return nil
		}
		if i > 0 && key <= prev {
			d.fail("bucket keys out of order: %q after %q", key, prev)
			return nil
		}
		sub := &IR{}
		d.irFields(sf, sub, ref)
		if d.err == nil && sub.Count <= 0 {
			d.fail("bucket %q is empty", key)
		}
		total += sub.Count
		b.m[key] = sub
		prev = key
	}
	if d.err == nil && total != count {
		d.fail("buckets hold %d events, the IR %d", total, count)
	}
	if d.err == nil && len(b.m)-boolInt(b.m[OtherBucket] != nil) > BucketsMax {
		d.fail("%d buckets beyond %s, at most %d", len(b.m), OtherBucket, BucketsMax)
	}
	return b
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
