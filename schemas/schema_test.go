package schemas_test

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/featurepipe/featurepipe/schemas"
)

func TestParseDescribesFields(t *testing.T) {
	s := mustParse(t, `{"type":"record","name":"Outer","namespace":"ns","fields":[
	  {"name":"a","type":"string"},
	  {"name":"b","type":["null","double"]},
	  {"name":"c","type":["long","null"]},
	  {"name":"d","type":["null",{"type":"long","logicalType":"timestamp-millis"}]},
	  {"name":"e","type":{"type":"enum","name":"E","symbols":["X"]}},
	  {"name":"f","type":["null","E"]},
	  {"name":"g","type":{"type":"record","name":"Inner","fields":[{"name":"z","type":"int"}]}},
	  {"name":"h","type":"Inner"},
	  {"name":"i","type":["null","string","long"]},
	  {"name":"j","type":["string","long"]},
	  {"name":"k","type":{"type":"array","items":"string"}},
	  {"name":"l","type":{"type":"map","values":"long"}},
	  {"name":"m","type":{"type":"fixed","name":"F","size":2}},
	  {"name":"n","type":{"type":"string","logicalType":"uuid"}}
	]}`)
	want := []schemas.Field{
		{Name: "a", Type: "string"},
		{Name: "b", Type: "double", Nullable: true},
		{Name: "c", Type: "long", Nullable: true},
		{Name: "d", Type: "long", Nullable: true, LogicalType: "timestamp-millis"},
		{Name: "e", Type: "enum"},
		{Name: "f", Type: "enum", Nullable: true},
		{Name: "g", Type: "record"},
		{Name: "h", Type: "record"},
		{Name: "i", Type: "union", Nullable: true},
		{Name: "j", Type: "union"},
		{Name: "k", Type: "array"},
		{Name: "l", Type: "map"},
		{Name: "m", Type: "fixed"},
		{Name: "n", Type: "string", LogicalType: "uuid"},
	}
	if s.Name != "ns.Outer" {
		t.Errorf("Name = %q, want ns.Outer", s.Name)
	}
	if !reflect.DeepEqual(s.Fields, want) {
		t.Fatalf("Fields\n got %+v\nwant %+v", s.Fields, want)
	}
	for _, f := range want {
		if got, ok := s.Field(f.Name); !ok || got != f {
			t.Errorf("Field(%q) = %+v, %v; want %+v", f.Name, got, ok, f)
		}
	}
	if _, ok := s.Field("zz"); ok {
		t.Error("Field of an unknown name reported ok")
	}
}

func TestParseDemoSchemas(t *testing.T) {
	for path, want := range map[string]struct {
		name   string
		fields []schemas.Field
	}{
		"transaction.avsc": {"featurepipe.demo.Transaction", []schemas.Field{
			{Name: "user_id", Type: "string"}, {Name: "merchant_id", Type: "string"}, {Name: "amount", Type: "double"},
			{Name: "currency", Type: "string"}, {Name: "ts", Type: "long", LogicalType: "timestamp-millis"}}},
		"login.avsc": {"featurepipe.demo.Login", []schemas.Field{
			{Name: "user_id", Type: "string"}, {Name: "country", Type: "string"}, {Name: "success", Type: "boolean"},
			{Name: "ts", Type: "long", LogicalType: "timestamp-millis"}}},
	} {
		s := mustLoad(t, path)
		if s.Name != want.name || !reflect.DeepEqual(s.Fields, want.fields) {
			t.Errorf("%s: got %s %+v, want %s %+v", path, s.Name, s.Fields, want.name, want.fields)
		}
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ name, text, why string }{
		{"invalid JSON", `{"type":"record"`, "invalid JSON"},
		{"data after the schema", `{"type":"record","name":"R","fields":[]} {}`, "data after"},
		{"a primitive schema", `"string"`, "want a record schema"},
		{"an enum schema", `{"type":"enum","name":"E","symbols":["A"]}`, `got type string "enum"`},
		{"a union schema", `["null","string"]`, "got array"},
		{"a record without fields", `{"type":"record","name":"R"}`, "fields"},
		{"a record with an unknown field type", `{"type":"record","name":"R","fields":[{"name":"a","type":"nope"}]}`, "nope"},
		{"a default of the wrong type", `{"type":"record","name":"R","fields":[{"name":"a","type":"long","default":"x"}]}`, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := schemas.Parse([]byte(tt.text))
			if err == nil {
				t.Fatalf("Parse = %v, want an error", s.Name)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("error %q does not say %q", err, tt.why)
			}
		})
	}
}

func TestLoadErrorsNameThePath(t *testing.T) {
	fsys := fstest.MapFS{"bad.avsc": {Data: []byte(`"int"`)}}
	_, err := schemas.Load(fsys, "missing.avsc")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.avsc") {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist naming the path", err)
	}
	if _, err = schemas.Load(fsys, "bad.avsc"); err == nil || !strings.Contains(err.Error(), "bad.avsc") {
		t.Errorf("bad schema: err = %v, want an error naming the path", err)
	}
}
