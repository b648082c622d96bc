package schemas_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/schemas"
)

func mustLoad(t testing.TB, path string) *schemas.Schema {
	t.Helper()
	s, err := schemas.Load(schemas.Files, path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustFromJSON(t testing.TB, s *schemas.Schema, line string) map[string]any {
	t.Helper()
	rec, err := s.FromJSON([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func mustEncode(t testing.TB, s *schemas.Schema, rec map[string]any) []byte {
	t.Helper()
	b, err := s.Encode(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkAgainstJSON asserts that rec, read through the accessors, holds the
// values of the JSON line it was produced from.
func checkAgainstJSON(t *testing.T, s *schemas.Schema, rec map[string]any, line string) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	var want map[string]any
	if err := dec.Decode(&want); err != nil {
		t.Fatal(err)
	}
	for _, f := range s.Fields {
		switch f.Type {
		case "string":
			got, err := schemas.String(rec, f.Name)
			if err != nil || got != want[f.Name] {
				t.Errorf("%s = %q, %v; want %q", f.Name, got, err, want[f.Name])
			}
		case "double":
			got, err := schemas.Float(rec, f.Name)
			w, _ := want[f.Name].(json.Number).Float64()
			if err != nil || got != w {
				t.Errorf("%s = %v, %v; want %v", f.Name, got, err, w)
			}
		case "long":
			got, err := schemas.Int(rec, f.Name)
			w, _ := want[f.Name].(json.Number).Int64()
			if err != nil || got != w {
				t.Errorf("%s = %d, %v; want %d", f.Name, got, err, w)
			}
		case "boolean":
			if rec[f.Name] != want[f.Name] {
				t.Errorf("%s = %v, want %v", f.Name, rec[f.Name], want[f.Name])
			}
		default:
			t.Fatalf("field %s: type %s not covered by this test", f.Name, f.Type)
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	txn, login := mustLoad(t, "transaction.avsc"), mustLoad(t, "login.avsc")
	reg := schemas.NewSet(txn, login)
	tests := []struct {
		name   string
		schema *schemas.Schema
		line   string
	}{
		{"transaction", txn, `{"user_id":"u-1","merchant_id":"m-9","amount":12.5,"currency":"EUR","ts":1700000000123}`},
		{"transaction before the epoch keeps millisecond precision", txn, `{"user_id":"u-1","merchant_id":"m-9","amount":-0.25,"currency":"EUR","ts":-1001}`},
		{"transaction with zero values", txn, `{"user_id":"","merchant_id":"","amount":0,"currency":"","ts":0}`},
		{"transaction with a far-future timestamp", txn, `{"user_id":"ü","merchant_id":"m","amount":1e300,"currency":"JPY","ts":253402300799999}`},
		{"login", login, `{"user_id":"u-2","country":"FR","success":true,"ts":1700000000999}`},
		{"failed login", login, `{"user_id":"u-3","country":"DE","success":false,"ts":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustEncode(t, tt.schema, mustFromJSON(t, tt.schema, tt.line))
			if !bytes.HasPrefix(b, []byte{0xC3, 0x01}) {
				t.Fatalf("encoding starts % x, want the single-object marker c3 01", b[:2])
			}
			if fp := binary.LittleEndian.Uint64(b[2:10]); fp != tt.schema.Fingerprint || fp != crc64Avro([]byte(tt.schema.CanonicalForm())) {
				t.Fatalf("header fingerprint %#x, want %#x", fp, tt.schema.Fingerprint)
			}
			if fp, err := schemas.Fingerprint(b); err != nil || fp != tt.schema.Fingerprint {
				t.Fatalf("Fingerprint(b) = %#x, %v; want %#x", fp, err, tt.schema.Fingerprint)
			}
			s, rec, err := reg.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if s != tt.schema {
				t.Fatalf("resolved schema %s, want %s", s.Name, tt.schema.Name)
			}
			checkAgainstJSON(t, s, rec, tt.line)
		})
	}
}

func TestDecodedTimestampIsTimeAndEncodesBack(t *testing.T) {
	txn := mustLoad(t, "transaction.avsc")
	reg := schemas.NewSet(txn)
	at := time.Date(2024, 2, 29, 23, 59, 59, 987_000_000, time.UTC)
	native := map[string]any{"user_id": "u", "merchant_id": "m", "amount": 1.0, "currency": "EUR", "ts": at}
	b := mustEncode(t, txn, native)
	_, rec, err := reg.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := rec["ts"].(time.Time); !ok || !got.Equal(at) {
		t.Fatalf("decoded ts = %#v, want time.Time %v", rec["ts"], at)
	}
	if ms, err := schemas.Int(rec, "ts"); err != nil || ms != at.UnixMilli() {
		t.Fatalf("Int(ts) = %d, %v; want %d", ms, err, at.UnixMilli())
	}
	// The decoded record encodes to the same bytes.
	if again := mustEncode(t, txn, rec); !bytes.Equal(again, b) {
		t.Fatalf("re-encoding the decoded record changed it:\n% x\n% x", again, b)
	}
}

func TestDecodeErrors(t *testing.T) {
	txn := mustLoad(t, "transaction.avsc")
	reg := schemas.NewSet(txn)
	valid := mustEncode(t, txn, mustFromJSON(t, txn, `{"user_id":"u-1","merchant_id":"m-9","amount":12.5,"currency":"EUR","ts":1700000000123}`))
	header := valid[:10]
	otherFP := append([]byte{0xC3, 0x01}, binary.LittleEndian.AppendUint64(nil, txn.Fingerprint^1)...)

	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"empty input is not single-object encoded", nil, schemas.ErrNotSingleObject},
		{"only the marker is not single-object encoded", []byte{0xC3, 0x01}, schemas.ErrNotSingleObject},
		{"header one byte short is not single-object encoded", valid[:9], schemas.ErrNotSingleObject},
		{"JSON text is not single-object encoded", []byte(`{"user_id":"u-1","amount":12.5}`), schemas.ErrNotSingleObject},
		{"wrong marker is not single-object encoded", append([]byte{0xC3, 0x02}, valid[2:]...), schemas.ErrNotSingleObject},
		{"unknown fingerprint", append(otherFP, valid[10:]...), schemas.ErrUnknownSchema},
		{"header without a body is malformed", header, schemas.ErrMalformed},
		{"truncated body is malformed", valid[:len(valid)-1], schemas.ErrMalformed},
		{"body cut inside a string is malformed", valid[:12], schemas.ErrMalformed},
		{"garbage body is malformed", append(bytes.Clone(header), bytes.Repeat([]byte{0xFF}, 32)...), schemas.ErrMalformed},
		{"string length beyond the input is malformed", append(bytes.Clone(header), 0x7E, 'a'), schemas.ErrMalformed},
		{"trailing garbage is malformed", append(bytes.Clone(valid), 0x00), schemas.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rec, err := reg.Decode(tt.input)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if s != nil || rec != nil {
				t.Fatalf("on error got schema %v and record %v, want nil", s, rec)
			}
		})
	}
}

func TestUnknownSchemaErrorNamesTheFingerprintInHex(t *testing.T) {
	txn, login := mustLoad(t, "transaction.avsc"), mustLoad(t, "login.avsc")
	b := mustEncode(t, login, mustFromJSON(t, login, `{"user_id":"u","country":"FR","success":true,"ts":1}`))
	_, _, err := schemas.NewSet(txn).Decode(b)
	if !errors.Is(err, schemas.ErrUnknownSchema) {
		t.Fatalf("err = %v, want ErrUnknownSchema", err)
	}
	if hex := fmt.Sprintf("%016x", login.Fingerprint); !strings.Contains(err.Error(), hex) {
		t.Fatalf("error %q does not name fingerprint %s", err, hex)
	}
}

func TestSet(t *testing.T) {
	txn, login := mustLoad(t, "transaction.avsc"), mustLoad(t, "login.avsc")

	t.Run("zero value is an empty set", func(t *testing.T) {
		var r schemas.Set
		if _, ok := r.Lookup(txn.Fingerprint); ok || r.Len() != 0 {
			t.Fatalf("zero Set found a schema or has Len %d", r.Len())
		}
		b := mustEncode(t, txn, mustFromJSON(t, txn, `{"user_id":"u","merchant_id":"m","amount":1,"currency":"EUR","ts":1}`))
		if _, _, err := r.Decode(b); !errors.Is(err, schemas.ErrUnknownSchema) {
			t.Fatalf("err = %v, want ErrUnknownSchema", err)
		}
		r.Add(txn)
		if s, ok := r.Lookup(txn.Fingerprint); !ok || s != txn {
			t.Fatal("Add on the zero value did not register the schema")
		}
	})

	t.Run("the same schema parsed twice collapses to the first", func(t *testing.T) {
		again := mustLoad(t, "transaction.avsc")
		r := schemas.NewSet(txn, again, login, nil)
		if r.Len() != 2 {
			t.Fatalf("Len = %d, want 2", r.Len())
		}
		if s, _ := r.Lookup(txn.Fingerprint); s != txn {
			t.Fatal("duplicate replaced the first schema")
		}
		r.Add(again)
		if s, _ := r.Lookup(txn.Fingerprint); s != txn || r.Len() != 2 {
			t.Fatal("Add of a duplicate changed the set")
		}
	})

	t.Run("schemas differing only in doc and logicalType share a fingerprint", func(t *testing.T) {
		raw, _ := schemas.Files.ReadFile("transaction.avsc")
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		plainText, _ := json.Marshal(stripAttrs(v, "doc", "logicalType"))
		plain, err := schemas.Parse(plainText)
		if err != nil {
			t.Fatal(err)
		}
		if plain.Fingerprint != txn.Fingerprint {
			t.Fatalf("fingerprints differ: %#x vs %#x", plain.Fingerprint, txn.Fingerprint)
		}
		if r := schemas.NewSet(txn, plain); r.Len() != 1 {
			t.Fatalf("Len = %d, want 1", r.Len())
		}
	})

	t.Run("records written by goavro's SingleFromNative resolve too", func(t *testing.T) {
		native := mustFromJSON(t, txn, `{"user_id":"u","merchant_id":"m","amount":3.5,"currency":"EUR","ts":42}`)
		b, err := txn.Codec.SingleFromNative(nil, native)
		if err != nil {
			t.Fatal(err)
		}
		s, rec, err := schemas.NewSet(login, txn).Decode(b)
		if err != nil || s != txn {
			t.Fatalf("Decode = %v, %v; want the transaction schema", s, err)
		}
		if amount, err := schemas.Float(rec, "amount"); err != nil || amount != 3.5 {
			t.Fatalf("amount = %v, %v; want 3.5", amount, err)
		}
	})

	t.Run("Add is safe while decoding", func(t *testing.T) {
		r := schemas.NewSet(txn)
		b := mustEncode(t, txn, mustFromJSON(t, txn, `{"user_id":"u","merchant_id":"m","amount":1,"currency":"EUR","ts":1}`))
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := range 50 {
				s, err := schemas.Parse([]byte(`{"type":"record","name":"R` + strconv.Itoa(i) + `","fields":[]}`))
				if err != nil {
					t.Error(err)
					return
				}
				r.Add(s)
			}
		})
		for range 500 {
			if _, _, err := r.Decode(b); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		if r.Len() != 51 {
			t.Fatalf("Len = %d, want 51", r.Len())
		}
	})
}

func TestEncode(t *testing.T) {
	txn := mustLoad(t, "transaction.avsc")
	reg := schemas.NewSet(txn)

	t.Run("appends to dst", func(t *testing.T) {
		prefix := []byte("prefix")
		out, err := txn.Encode(prefix, mustFromJSON(t, txn, `{"user_id":"u","merchant_id":"m","amount":1,"currency":"EUR","ts":1}`))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(out, prefix) {
			t.Fatalf("output % x does not start with dst", out)
		}
		if _, _, err := reg.Decode(out[len(prefix):]); err != nil {
			t.Fatalf("appended record does not decode: %v", err)
		}
	})

	t.Run("a missing field without default fails and returns dst unchanged", func(t *testing.T) {
		dst := []byte("keep")
		out, err := txn.Encode(dst, map[string]any{"user_id": "u"})
		if err == nil {
			t.Fatal("want an error for a record missing fields")
		}
		if !strings.Contains(err.Error(), txn.Name) || string(out) != "keep" {
			t.Fatalf("err = %v, out = %q; want the schema named and dst unchanged", err, out)
		}
	})

	t.Run("a value of the wrong type fails", func(t *testing.T) {
		native := mustFromJSON(t, txn, `{"user_id":"u","merchant_id":"m","amount":1,"currency":"EUR","ts":1}`)
		native["amount"] = "lots"
		if _, err := txn.Encode(nil, native); err == nil || !strings.Contains(err.Error(), "amount") {
			t.Fatalf("err = %v, want an error naming amount", err)
		}
	})
}

func FuzzDecode(f *testing.F) {
	txn, login := mustLoad(f, "transaction.avsc"), mustLoad(f, "login.avsc")
	reg := schemas.NewSet(txn, login)
	f.Add(mustEncode(f, txn, mustFromJSON(f, txn, `{"user_id":"u-1","merchant_id":"m-9","amount":12.5,"currency":"EUR","ts":1700000000123}`)))
	f.Add(mustEncode(f, login, mustFromJSON(f, login, `{"user_id":"u-2","country":"FR","success":true,"ts":-5}`)))
	f.Add([]byte{0xC3, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, rec, err := reg.Decode(b)
		switch {
		case err == nil:
			if s == nil || rec == nil {
				t.Fatal("success without schema or record")
			}
			// A decoded record must satisfy its own schema.
			if _, err := s.Encode(nil, rec); err != nil {
				t.Fatalf("decoded record does not re-encode: %v", err)
			}
		case !errors.Is(err, schemas.ErrNotSingleObject) && !errors.Is(err, schemas.ErrUnknownSchema) && !errors.Is(err, schemas.ErrMalformed):
			t.Fatalf("error %v wraps none of the sentinels", err)
		}
	})
}

// BenchmarkDecode measures Set.Decode of one demo transaction.
func BenchmarkDecode(b *testing.B) {
	txn, login := mustLoad(b, "transaction.avsc"), mustLoad(b, "login.avsc")
	reg := schemas.NewSet(txn, login)
	rec := mustEncode(b, txn, mustFromJSON(b, txn, `{"user_id":"user-000123","merchant_id":"merchant-42","amount":12.5,"currency":"EUR","ts":1700000000123}`))
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := reg.Decode(rec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkEncode measures Schema.Encode of one demo transaction into a reused buffer.
func BenchmarkEncode(b *testing.B) {
	txn := mustLoad(b, "transaction.avsc")
	native := mustFromJSON(b, txn, `{"user_id":"user-000123","merchant_id":"merchant-42","amount":12.5,"currency":"EUR","ts":1700000000123}`)
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = txn.Encode(buf[:0], native); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
