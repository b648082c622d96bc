package produce_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/schemaregistry"
	"github.com/featurepipe/featurepipe/internal/schemaregistry/registrytest"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/schemas"
)

// confluentConfig is the demo file with transactions in Confluent's wire
// format, registry at url.
func confluentConfig(t *testing.T, url string) *config.File {
	t.Helper()
	demo, err := fs.ReadFile(schemas.Files, "demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := "kafka:\n  schema_registry: {url: \"" + url + "\"}\n" + strings.Replace(string(demo),
		"    schema: transaction.avsc\n", "    schema: transaction.avsc\n    encoding: confluent\n", 1)
	fsys := fstest.MapFS{}
	for _, n := range []string{"transaction.avsc", "login.avsc"} {
		b, err := fs.ReadFile(schemas.Files, n)
		if err != nil {
			t.Fatal(err)
		}
		fsys[n] = &fstest.MapFile{Data: b}
	}
	cfg, err := config.Parse("demo.yaml", []byte(text), fsys, ".")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// produce registers the source's schema under <topic>-value once and
// writes Confluent's wire format with its id; the records decode as the
// workers decode them.
func TestConfluentEncoderRegistersUnderTheTopicSubject(t *testing.T) {
	reg := registrytest.New()
	url, stop := reg.Start()
	defer stop()
	cfg := confluentConfig(t, url)
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint32
	for i := 0; i < 3; i++ {
		rec, err := enc.FromJSON([]byte(`{"user_id":"u-1","merchant_id":"m1","amount":12.5,"currency":"EUR","ts":1767225600000}`))
		if err != nil {
			t.Fatal(err)
		}
		if rec.Value[0] != 0 || len(rec.Value) < 5 {
			t.Fatalf("value % x is not Confluent's wire format", rec.Value)
		}
		ids = append(ids, binary.BigEndian.Uint32(rec.Value[1:5]))
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("schema ids %v, want one", ids)
	}
	// The direct JSON-to-Avro path writes the same header and body.
	if line := `{"user_id":"u-1","merchant_id":"m1","amount":12.5,"currency":"EUR","ts":1767225600000}`; !checkFastPathMatches(t, enc, line) {
		t.Fatalf("the direct path declined %s", line)
	}
	src := enc.Source()
	// The subject holds exactly that schema as version 1, registered once.
	c, err := schemaregistry.New(schemaregistry.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Register(context.Background(), schemaregistry.SubjectForTopic(src.Topic), src.Schema)
	if err != nil || again != ids[0] {
		t.Fatalf("subject %s-value: id %d, %v; want %d", src.Topic, again, err, ids[0])
	}
	s, err := c.SchemaByID(context.Background(), ids[0])
	if err != nil || s.Fingerprint != src.Schema.Fingerprint {
		t.Fatalf("registered schema %v, %v; want the source's", s, err)
	}
}

// A registry that refuses the schema (its compatibility check) makes
// produce fail with the subject named; nothing is encoded.
func TestConfluentEncoderReportsARefusedSchema(t *testing.T) {
	reg := registrytest.New()
	url, stop := reg.Start()
	defer stop()
	cfg := confluentConfig(t, url)
	src, _ := cfg.Source("transactions")
	older, err := schemas.Parse([]byte(`{"type":"record","name":"Transaction","namespace":"featurepipe.demo","fields":[{"name":"user_id","type":"string"},{"name":"amount","type":"string"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := schemaregistry.New(schemaregistry.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(context.Background(), src.Topic+"-value", older); err != nil {
		t.Fatal(err)
	}
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	_, err = enc.FromJSON([]byte(`{"user_id":"u-1","merchant_id":"m1","amount":12.5,"currency":"EUR","ts":1767225600000}`))
	var e *schemaregistry.Error
	if !errors.As(err, &e) || e.Code != 409 || !strings.Contains(err.Error(), "subject transactions-value") {
		t.Fatalf("err = %v, want the registry's 409 naming the subject", err)
	}
}
