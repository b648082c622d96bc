package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Confluent wire format (Confluent's documentation, "Wire format"): the magic
// byte 0, the 4-byte big-endian id of the writer schema in a schema
// registry, then the Avro binary body. It is what Confluent's serializers
// (Java KafkaAvroSerializer, confluent-kafka's AvroSerializer, ...) write.

// ErrNotConfluent: the input is shorter than the 5-byte header or does not
// start with the magic byte 0.
var ErrNotConfluent = errors.New("not in Confluent wire format")

const confluentHeaderLen = 1 + 4

// ConfluentID returns the schema id in the header of a Confluent
// wire-format record and the Avro body after it (aliasing b). The error wraps
// ErrNotConfluent.
func ConfluentID(b []byte) (id uint32, body []byte, err error) {
	if len(b) < confluentHeaderLen {
		return 0, nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrNotConfluent, len(b), confluentHeaderLen)
	}
	if b[0] != 0 {
		return 0, nil, fmt.Errorf("%w: magic byte %#02x, want 0x00", ErrNotConfluent, b[0])
	}
	return binary.BigEndian.Uint32(b[1:confluentHeaderLen]), b[confluentHeaderLen:], nil
}

// AppendConfluentHeader appends the Confluent wire-format header (magic byte
// 0 and the big-endian schema id, 5 bytes) to dst: what EncodeConfluent
// writes before the Avro body.
func AppendConfluentHeader(dst []byte, id uint32) []byte {
	return binary.BigEndian.AppendUint32(append(dst, 0), id)
}

// EncodeConfluent appends the Confluent wire-format encoding of native,
// written with s registered under schema id, to dst and returns the extended
// slice; on error it returns dst unchanged. native is as for Encode.
func (s *Schema) EncodeConfluent(dst []byte, id uint32, native map[string]any) ([]byte, error) {
	out, err := s.Codec.BinaryFromNative(AppendConfluentHeader(dst, id), native)
	if err != nil {
		return dst, fmt.Errorf("encode %s: %w", s.Name, err)
	}
	return out, nil
}
