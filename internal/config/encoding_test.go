package config

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

// txSource is the transactions source of header, for edits.
const txSource = `  - name: transactions
    topic: transactions
    schema: transaction.avsc
    event_time: ts
`

func withSource(extra string) string {
	return strings.Replace(header, txSource, txSource+extra, 1)
}

const oldTransaction = `{"type":"record","name":"Transaction","namespace":"featurepipe.demo","fields":[
 {"name":"user_id","type":"string"},{"name":"merchant_id","type":"string"},{"name":"amount","type":"float"},{"name":"ts","type":"long"}]}`

func TestEncodingAndSchemaRegistry(t *testing.T) {
	doc := `kafka:
  schema_registry:
    url: http://registry:8081/
    username: featurepipe
    password_env: FP_REGISTRY_PASSWORD
` + withSource("    encoding: confluent\n") + "features:\n" + validFeature
	f := mustParse(t, doc)
	want := SchemaRegistry{URL: "http://registry:8081/", Username: "featurepipe", PasswordEnv: "FP_REGISTRY_PASSWORD", Line: 3}
	if f.Kafka.SchemaRegistry != want {
		t.Errorf("SchemaRegistry = %+v, want %+v", f.Kafka.SchemaRegistry, want)
	}
	tx, _ := f.Source("transactions")
	lg, _ := f.Source("logins")
	if tx.Encoding != EncodingConfluent || lg.Encoding != EncodingSingleObject {
		t.Errorf("encodings = %q, %q; want confluent and the default single-object", tx.Encoding, lg.Encoding)
	}

	fsys := schemaFS(t)
	fsys["old.avsc"] = &fstest.MapFile{Data: []byte(oldTransaction)}
	f, err := Parse("features.yaml", []byte(withSource("    writer_schemas: [old.avsc]\n")+"features:\n"+validFeature), fsys, ".")
	if err != nil {
		t.Fatal(err)
	}
	tx, _ = f.Source("transactions")
	if len(tx.WriterSchemas) != 1 || tx.WriterSchemaPaths[0] != "old.avsc" || tx.WriterSchemas[0].Fields[2].Type != "float" {
		t.Fatalf("writer schemas = %v %v", tx.WriterSchemaPaths, tx.WriterSchemas)
	}
	if got := len(f.WriterSchemas()); got != 3 {
		t.Errorf("File.WriterSchemas() has %d schemas, want 3 (two sources, one writer)", got)
	}
}

func TestInvalidEncodingAndSchemaRegistry(t *testing.T) {
	feature := "features:\n" + validFeature
	tests := []struct {
		name, doc, field, msg string
	}{
		{"unknown encoding",
			withSource("    encoding: json # want\n") + feature,
			"sources[0].encoding", `unknown encoding "json"; allowed: single-object (the default), confluent`},
		{"confluent needs a schema registry",
			withSource("    encoding: confluent # want\n") + feature,
			"sources[0].encoding", "add kafka.schema_registry with its url"},
		{"writer_schemas do not apply to confluent",
			"kafka:\n  schema_registry: {url: \"http://r:8081\"}\n" + withSource("    encoding: confluent\n    writer_schemas: [transaction.avsc] # want\n") + feature,
			"sources[0].writer_schemas", "single-object encoding only"},
		{"a writer schema that cannot be loaded is named with its line",
			withSource("    writer_schemas:\n      - transaction.avsc\n      - missing.avsc # want\n") + feature,
			"sources[0].writer_schemas[1]", "cannot load schema missing.avsc"},
		{"registry url is required",
			"kafka:\n  schema_registry: {username: u, password_env: P} # want\n" + header + feature,
			"kafka.schema_registry.url", "required"},
		{"registry url must be http(s)",
			"kafka:\n  schema_registry:\n    url: registry:8081 # want\n" + header + feature,
			"kafka.schema_registry.url", "is not a schema registry URL"},
		{"credentials never go in the url",
			"kafka:\n  schema_registry:\n    url: http://u:secret@registry:8081 # want\n" + header + feature,
			"kafka.schema_registry.url", "without credentials"},
		{"username needs password_env",
			"kafka:\n  schema_registry:\n    url: http://r:8081\n    username: fp # want\n" + header + feature,
			"kafka.schema_registry.password_env", "the password itself never goes in this file"},
		{"password_env names a variable, not a password",
			"kafka:\n  schema_registry:\n    url: http://r:8081\n    username: fp\n    password_env: hunter2! # want\n" + header + feature,
			"kafka.schema_registry.password_env", "is not an environment variable name"},
		{"unknown registry key",
			"kafka:\n  schema_registry:\n    url: http://r:8081\n    password: hunter2 # want\n" + header + feature,
			"kafka.schema_registry.password", `unknown key "password"; allowed: url, username, password_env`},
		{"a feature's field must be in the reader schema, whatever the writers",
			withSource("    writer_schemas: [login.avsc]\n") + "features:\n" + strings.Replace(validFeature, "field: amount", "field: amount_eur # want", 1),
			"features[0].field", `field "amount_eur" is not in schema featurepipe.demo.Transaction`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantLine := markedLine(t, tt.doc)
			f, err := Parse("features.yaml", []byte(tt.doc), schemaFS(t), ".")
			if f != nil {
				t.Errorf("Parse returned a *File alongside error %v", err)
			}
			var e *Error
			if !errors.As(err, &e) || errors.As(err, new(Errors)) {
				t.Fatalf("got %v; want exactly one problem\n--- file ---\n%s", err, tt.doc)
			}
			if e.Line != wantLine || e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got  %v\nwant features.yaml:%d: %s: ...%s...", e, wantLine, tt.field, tt.msg)
			}
		})
	}
}

func TestWhereFieldsAreListed(t *testing.T) {
	doc := header + "features:\n" + validFeature + `    where: "amount > 10.0 && merchant_id != 'm' && amount < 1e6"
`
	f := mustParse(t, doc)
	got := f.Features[0].Filter.Fields
	if strings.Join(got, ",") != "amount,merchant_id" {
		t.Errorf("Filter.Fields = %v, want [amount merchant_id]", got)
	}
}
