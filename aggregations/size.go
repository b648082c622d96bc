package aggregations

import "math/bits"

// Encoded sizes, computed without encoding: each function below returns
// exactly the number of bytes its append counterpart in encoding.go writes
// (TestEncodedLenIsTheEncoding holds them together), in time linear in the
// structure and without allocating. They serve the tile budget (bucket.go).

// uvarintLen is len(binary.AppendUvarint(nil, x)).
func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// varintLen is len(binary.AppendVarint(nil, x)).
func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

// stringLen is len(appendString(nil, s)).
func stringLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

// flagsLen is len(appendFlags(nil, flags)).
func flagsLen(flags uint64) int {
	if flags <= 0xFF {
		return 1
	}
	return 1 + uvarintLen(flags)
}

// irFieldsLen is len(appendIRFields(nil, flags, ir, ref)).
func irFieldsLen(flags uint64, ir *IR, ref int64) int {
	n := 0
	if flags&flagCount != 0 {
		n += varintLen(ir.Count)
	}
	for _, f := range [...]uint64{flagSum, flagMin, flagMax, flagLast, flagMean, flagM2} {
		if flags&f != 0 {
			n += 8
		}
	}
	if flags&flagLastTS != 0 {
		n += varintLen(ir.LastTS - ref)
	}
	if flags&flagLastSeq != 0 {
		n += varintLen(ir.LastSeq)
	}
	if flags&flagFirst != 0 {
		n += 8 + varintLen(ir.FirstTS-ref) + varintLen(ir.FirstSeq)
	}
	if flags&flagStrings != 0 {
		n += stringLen(ir.s.last) + stringLen(ir.s.first)
	}
	if flags&flagHLL != 0 {
		n += hllLen(ir.hll)
	}
	if flags&flagQuantiles != 0 {
		n += quantilesLen(ir.qs)
	}
	if flags&(flagFirstK|flagLastK) != 0 {
		n += kListLen(ir.ks, ref, flags&flagStrings != 0)
	}
	if flags&flagTopK != 0 {
		n += topKLen(ir.tk)
	}
	if flags&flagBuckets != 0 {
		n += uvarintLen(uint64(len(ir.bk.m)))
		for k, sub := range ir.bk.m {
			n += bucketLen(k, sub, ref)
		}
	}
	return n
}

// bucketLen is the encoded size of one bucket of a bucketed IR: its key,
// the sub-IR's flags and its fields.
func bucketLen(key string, sub *IR, ref int64) int {
	sf := irFlags(sub)
	return stringLen(key) + flagsLen(sf) + irFieldsLen(sf, sub, ref)
}

// topKLen is len(appendTopK(nil, t)).
func topKLen(t *topK) int {
	n := uvarintLen(uint64(t.err)) + uvarintLen(uint64(len(t.cs)))
	for _, c := range t.cs {
		if t.strs {
			n += stringLen(c.s)
		} else {
			n += 8
		}
		n += uvarintLen(uint64(c.n))
	}
	return n
}

// kListLen is len(appendKList(nil, l, ref, strs)).
func kListLen(l *kList, ref int64, strs bool) int {
	n := uvarintLen(uint64(l.k)) + uvarintLen(uint64(len(l.evs)))
	for i, e := range l.evs {
		n += varintLen(e.TS-ref) + varintLen(e.Seq) + 8
		if strs {
			n += stringLen(l.str(i))
		}
	}
	return n
}

// hllLen is len(appendHLL(nil, s)).
func hllLen(s *hll) int {
	n := 1
	if !s.registers() {
		n += uvarintLen(uint64(len(s.exact)))
		var prev uint64
		for _, h := range s.exact {
			n += uvarintLen(h - prev)
			prev = h
		}
		return n
	}
	if s.dense != nil && len(s.dense) == hllM {
		// Dense only past hllSparseMax non-zero registers (the sketch's
		// invariant, which the decoder checks): the count's varint is that
		// of any number in (hllSparseMax, hllM], without scanning the
		// registers.
		return n + uvarintLen(0) + uvarintLen(hllM) + hllM
	}
	k := s.nonZero()
	n += uvarintLen(0) + uvarintLen(uint64(k))
	if k > hllSparseMax {
		return n + len(s.dense)
	}
	var prev uint32
	emit := func(idx uint32) {
		n += uvarintLen(uint64(idx-prev)) + 1
		prev = idx
	}
	if s.dense != nil {
		for i, r := range s.dense {
			if r != 0 {
				emit(uint32(i))
			}
		}
		return n
	}
	for _, e := range s.sparse {
		emit(e >> 8)
	}
	return n
}

// quantilesLen is len(appendQuantiles(nil, s)).
func quantilesLen(s *quantiles) int {
	n := 8 + uvarintLen(s.zero)
	for _, store := range [2][]bucket{s.pos, s.neg} {
		n += uvarintLen(uint64(len(store)))
		for i, b := range store {
			if i == 0 {
				n += varintLen(int64(b.key))
			} else {
				n += uvarintLen(uint64(int64(b.key) - int64(store[i-1].key)))
			}
			n += uvarintLen(b.n)
		}
	}
	return n
}

// irLen is the encoded size of ir as a tile's IR: its flags and fields
// (AppendTile adds the tile's Start and its pending events).
func irLen(ir *IR, ref int64) int {
	f := irFlags(ir)
	return flagsLen(f) + irFieldsLen(f, ir, ref)
}
