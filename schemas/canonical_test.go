package schemas_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/schemas"
	"github.com/linkedin/goavro/v2"
)

// crc64Avro is the CRC-64-AVRO fingerprint written straight from the Avro
// specification ("Schema Fingerprints"), one bit at a time, independently of
// the table-driven implementation under test.
func crc64Avro(data []byte) uint64 {
	const empty = 0xc15d213aa4d7a795
	fp := uint64(empty)
	for _, c := range data {
		fp ^= uint64(c)
		for range 8 {
			fp = (fp >> 1) ^ (empty & -(fp & 1))
		}
	}
	return fp
}

func TestCRC64AvroOfEmptyInputIsTheSpecConstant(t *testing.T) {
	if got := crc64Avro(nil); got != 0xc15d213aa4d7a795 {
		t.Fatalf("crc64Avro(empty) = %#x, want 0xc15d213aa4d7a795", got)
	}
}

// Vectors from the Avro project's share/test/data/schema-tests.txt, whose
// fingerprints the Java implementation cross-checks.
func TestCanonicalFormMatchesAvroTestSuite(t *testing.T) {
	tests := []struct {
		name, input, canonical string
		fingerprint            int64 // as printed by Java (signed)
	}{
		{"000 null", `"null"`, `"null"`, 7195948357588979594},
		{"002 boolean", `"boolean"`, `"boolean"`, -6970731678124411036},
		{"005 primitive object reduces", `{"type":"int"}`, `"int"`, 8247732601305521295},
		{"006 long", `"long"`, `"long"`, -3434872931120570953},
		{"010 double", `"double"`, `"double"`, -8181574048448539266},
		{"014 string", `"string"`, `"string"`, -8142146995180207161},
		{"018 union", `[ "int" , {"type":"boolean"} ]`, `["int","boolean"]`, 5392556393470105090},
		{"020 namespace qualifies name", `{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}`, `{"name":"x.y.foo","type":"record","fields":[]}`, 5916914534497305771},
		{"021 dotted name wins over namespace", `{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}`, `{"name":"a.b.foo","type":"record","fields":[]}`, -4616218487480524110},
		{"024 doc and aliases stripped", `{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}`, `{"name":"foo","type":"record","fields":[]}`, -4824392279771201922},
		{"025 field type reduces", `{"fields":[{"type":{"type":"boolean"}, "name":"f1"}], "type":"record", "name":"foo"}`, `{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}`, 7843277075252814651},
		{"026 field attributes stripped", `{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":"true"},
            {"order":"descending","name":"f2","doc":"Hello","type":"int"}],
  "type":"record", "name":"foo"}`, `{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}`, -4860222112080293046},
		{"028 enum", `{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}`, `{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}`, -4448647247586288245},
		{"030 fixed", `{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}`, `{"name":"x.y.z.foo","type":"fixed","size":32}`, -3064184465700546786},
		{"031 array", `{ "items":{"type":"null"}, "type":"array"}`, `{"type":"array","items":"null"}`, -589620603366471059},
		{"032 map", `{ "values":"string", "type":"map"}`, `{"type":"map","values":"string"}`, -8732877298790414990},
		{"033 recursive reference", `{"name":"PigValue","type":"record",
   "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}`, `{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}`, -1759257747318642341},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := schemas.CanonicalFormOf([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.canonical {
				t.Fatalf("canonical form\n got %s\nwant %s", got, tt.canonical)
			}
			if fp := crc64Avro([]byte(got)); int64(fp) != tt.fingerprint {
				t.Fatalf("fingerprint %d, want %d", int64(fp), tt.fingerprint)
			}
		})
	}
}

// Rules of the specification that the Avro suite does not exercise but our
// schemas rely on: derived by hand from [STRIP], [PRIMITIVES] and [FULLNAMES].
func TestCanonicalFormRules(t *testing.T) {
	tests := []struct{ name, input, canonical string }{
		{"logicalType is stripped and the primitive reduces",
			`{"type":"long","logicalType":"timestamp-millis"}`, `"long"`},
		{"field with a logical type reduces to the primitive",
			`{"type":"record","name":"R","fields":[{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"},"doc":"d"}]}`,
			`{"name":"R","type":"record","fields":[{"name":"ts","type":"long"}]}`},
		{"a nested namespace is absolute, not joined to the parent's",
			`{"type":"record","name":"R","namespace":"x","fields":[{"name":"e","type":{"type":"enum","name":"E","namespace":"y","symbols":["A"]}}]}`,
			`{"name":"x.R","type":"record","fields":[{"name":"e","type":{"name":"y.E","type":"enum","symbols":["A"]}}]}`},
		{"a nested type inherits the enclosing namespace",
			`{"type":"record","name":"R","namespace":"x","fields":[{"name":"f","type":{"type":"fixed","name":"F","size":4}},{"name":"g","type":"F"}]}`,
			`{"name":"x.R","type":"record","fields":[{"name":"f","type":{"name":"x.F","type":"fixed","size":4}},{"name":"g","type":"x.F"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := schemas.CanonicalFormOf([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.canonical {
				t.Fatalf("canonical form\n got %s\nwant %s", got, tt.canonical)
			}
		})
	}
}

// stripAttrs removes the named attributes from every object of a JSON value.
func stripAttrs(v any, attrs ...string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if !contains(attrs, k) {
				out[k] = stripAttrs(e, attrs...)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = stripAttrs(e, attrs...)
		}
		return out
	}
	return v
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func TestDemoSchemaFingerprints(t *testing.T) {
	for _, path := range []string{"transaction.avsc", "login.avsc"} {
		t.Run(path, func(t *testing.T) {
			s, err := schemas.Load(schemas.Files, path)
			if err != nil {
				t.Fatal(err)
			}
			if got := crc64Avro([]byte(s.CanonicalForm())); got != s.Fingerprint {
				t.Errorf("Fingerprint %#x, want CRC-64-AVRO of CanonicalForm %#x", s.Fingerprint, got)
			}
			if got := crc64Avro([]byte(s.Codec.CanonicalSchema())); got != s.Codec.Rabin {
				t.Errorf("Codec.Rabin %#x, want CRC-64-AVRO of Codec.CanonicalSchema %#x", s.Codec.Rabin, got)
			}
			if c := s.CanonicalForm(); strings.Contains(c, "logicalType") || strings.Contains(c, "doc") || strings.Contains(c, " ") {
				t.Errorf("canonical form keeps attributes or whitespace: %s", c)
			}

			// Without doc and logicalType attributes goavro's canonical form is
			// the specification's, so its fingerprint of the stripped schema must
			// equal ours of the original.
			raw, err := schemas.Files.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatal(err)
			}
			stripped, err := json.Marshal(stripAttrs(v, "doc", "logicalType"))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := goavro.NewCodec(string(stripped))
			if err != nil {
				t.Fatal(err)
			}
			if plain.Rabin != s.Fingerprint {
				t.Errorf("Fingerprint %#x, want goavro's fingerprint of the schema without logical types %#x", s.Fingerprint, plain.Rabin)
			}
		})
	}
}

func TestFingerprintEqualsCodecRabinWithoutLogicalTypes(t *testing.T) {
	s, err := schemas.Parse([]byte(`{"type":"record","name":"P","namespace":"t","fields":[{"name":"a","type":"string"},{"name":"b","type":["null","double"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Fingerprint != s.Codec.Rabin {
		t.Fatalf("Fingerprint %#x != Codec.Rabin %#x for a schema goavro canonicalises correctly", s.Fingerprint, s.Codec.Rabin)
	}
}
