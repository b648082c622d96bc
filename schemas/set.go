package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Errors returned by Decode and Fingerprint, always wrapped with detail; check
// them with errors.Is. All three mean the record can never be decoded as it is
// (retrying will not help): dead-letter it.
var (
	// ErrNotSingleObject: the input is shorter than the 10-byte header or does
	// not start with the marker C3 01.
	ErrNotSingleObject = errors.New("not Avro single-object encoded")
	// ErrUnknownSchema: the header names a fingerprint the Set does not
	// hold. The message includes the fingerprint in hex.
	ErrUnknownSchema = errors.New("unknown schema fingerprint")
	// ErrMalformed: the body does not decode with the writer schema
	// (truncated, garbage) or has bytes left after the record.
	ErrMalformed = errors.New("malformed Avro body")
)

// soeMarker and soeHeaderLen describe the single-object encoding header.
var soeMarker = [2]byte{0xC3, 0x01}

const soeHeaderLen = 2 + 8

// Fingerprint returns the writer-schema fingerprint in the header of a
// single-object encoded record, without decoding it (useful for dead-letter
// headers and metrics labels). The error wraps ErrNotSingleObject.
func Fingerprint(b []byte) (uint64, error) {
	if len(b) < soeHeaderLen {
		return 0, fmt.Errorf("%w: %d bytes, want at least %d", ErrNotSingleObject, len(b), soeHeaderLen)
	}
	if b[0] != soeMarker[0] || b[1] != soeMarker[1] {
		return 0, fmt.Errorf("%w: marker %#02x %#02x, want 0xc3 0x01", ErrNotSingleObject, b[0], b[1])
	}
	return binary.LittleEndian.Uint64(b[2:soeHeaderLen]), nil
}

// Encode appends the single-object encoding of native to dst and returns the
// extended slice; on error it returns dst unchanged. The header carries
// s.Fingerprint (the specification's fingerprint, which Java, Python and Rust
// consumers compute too), not goavro's Codec.Rabin. native is a goavro native
// record: a field missing from the map takes the schema's default, and a
// timestamp-millis field may hold a time.Time or epoch milliseconds as a Go
// integer. Encoding allocates only when dst must grow; reuse dst[:0] across
// calls on a hot path.
func (s *Schema) Encode(dst []byte, native map[string]any) ([]byte, error) {
	out, err := s.Codec.BinaryFromNative(s.AppendSingleObjectHeader(dst), native)
	if err != nil {
		return dst, fmt.Errorf("encode %s: %w", s.Name, err)
	}
	return out, nil
}

// AppendSingleObjectHeader appends the single-object encoding header of s
// (the marker and s.Fingerprint, 10 bytes) to dst: what Encode writes before
// the Avro body.
func (s *Schema) AppendSingleObjectHeader(dst []byte) []byte {
	return binary.LittleEndian.AppendUint64(append(dst, soeMarker[0], soeMarker[1]), s.Fingerprint)
}

// Set resolves writer schemas by fingerprint. The zero value is an empty
// set ready to use.
//
// Lookup and Decode take no lock (they read an immutable map through an
// atomic pointer) and are safe to call concurrently with each other and with
// Add. Add copies the map, so it costs O(n) in the number of schemas: add
// schemas at startup, not per record.
//
// A schema is found by its Fingerprint and also by goavro's Codec.Rabin when
// that differs (see Schema.CanonicalForm), so records written with
// Codec.SingleFromNative decode too.
type Set struct {
	mu    sync.Mutex // serialises Add
	table atomic.Pointer[setTable]
}

// setTable is an immutable snapshot of a Set.
type setTable struct {
	byFP map[uint64]*Schema // Fingerprint and Codec.Rabin -> schema
	n    int                // distinct schemas
}

// with returns a copy of t holding s too, or t itself when s's fingerprint is
// already there.
func (t *setTable) with(s *Schema) *setTable {
	var old map[uint64]*Schema
	n := 0
	if t != nil {
		old, n = t.byFP, t.n
	}
	if _, ok := old[s.Fingerprint]; ok {
		return t
	}
	m := make(map[uint64]*Schema, len(old)+2)
	for fp, v := range old {
		m[fp] = v
	}
	m[s.Fingerprint] = s
	if _, ok := m[s.Codec.Rabin]; !ok {
		m[s.Codec.Rabin] = s
	}
	return &setTable{byFP: m, n: n + 1}
}

// NewSet returns a set holding ss. Schemas with the same
// fingerprint collapse into one (see Add); nil entries are ignored.
func NewSet(ss ...*Schema) *Set {
	r := &Set{}
	for _, s := range ss {
		r.Add(s)
	}
	return r
}

// Add registers s under its fingerprint. If a schema with the same
// fingerprint is already registered, the first one is kept: equal
// fingerprints mean equal Parsing Canonical Forms, which ignore doc, default
// and logicalType attributes, so the two decode the same bytes. A nil s is
// ignored.
func (r *Set) Add(s *Schema) {
	if s == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.table.Store(r.table.Load().with(s))
}

// Lookup returns the schema registered under fingerprint fp (its
// Fingerprint, or its Codec.Rabin).
func (r *Set) Lookup(fp uint64) (*Schema, bool) {
	t := r.table.Load()
	if t == nil {
		return nil, false
	}
	s, ok := t.byFP[fp]
	return s, ok
}

// Len returns the number of distinct schemas registered.
func (r *Set) Len() int {
	if t := r.table.Load(); t != nil {
		return t.n
	}
	return 0
}

// Decode parses one single-object encoded record, resolving the writer schema
// by the fingerprint in its header. It returns that schema and the goavro
// native record. Errors wrap ErrNotSingleObject, ErrUnknownSchema or
// ErrMalformed; the whole of b must be one record (trailing bytes are
// ErrMalformed).
//
// Strings in the result are copies, but values of Avro type bytes alias b:
// copy them before reusing b. A panic inside the Avro decoder on hostile input
// is recovered and reported as ErrMalformed, so one bad record cannot crash a
// worker.
func (r *Set) Decode(b []byte) (s *Schema, rec map[string]any, err error) {
	fp, err := Fingerprint(b)
	if err != nil {
		return nil, nil, err
	}
	s, ok := r.Lookup(fp)
	if !ok {
		return nil, nil, fmt.Errorf("%w 0x%016x (set holds %d schemas)", ErrUnknownSchema, fp, r.Len())
	}
	rec, err = s.DecodeBinary(b[soeHeaderLen:])
	if err != nil {
		return nil, nil, err
	}
	return s, rec, nil
}

// Split returns the writer schema and the Avro binary body of a
// single-object encoded record, without decoding it: ok is false when b is
// not single-object encoded or its schema is not in the set (Decode says
// which).
func (r *Set) Split(b []byte) (s *Schema, body []byte, ok bool) {
	fp, err := Fingerprint(b)
	if err != nil {
		return nil, nil, false
	}
	if s, ok = r.Lookup(fp); !ok {
		return nil, nil, false
	}
	return s, b[soeHeaderLen:], true
}

// DecodeBinary decodes the Avro binary body b (no header) of one record
// written with s. Errors wrap ErrMalformed: b does not decode, or has bytes
// left after the record. As for Set.Decode, values of Avro type bytes alias b
// and a decoder panic on hostile input is recovered as ErrMalformed.
func (s *Schema) DecodeBinary(b []byte) (rec map[string]any, err error) {
	defer func() {
		if p := recover(); p != nil {
			rec, err = nil, fmt.Errorf("%w: %s: decoder panic: %v", ErrMalformed, s.Name, p)
		}
	}()
	native, rest, err := s.Codec.NativeFromBinary(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, s.Name, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %s: %d trailing bytes after the record", ErrMalformed, s.Name, len(rest))
	}
	rec, ok := native.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s: decoded %T, want a record", ErrMalformed, s.Name, native)
	}
	return rec, nil
}
