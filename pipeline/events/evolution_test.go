package events_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/schemaregistry"
	"github.com/featurepipe/featurepipe/internal/schemaregistry/registrytest"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/schemas"
)

// Versions of one Payment record. v2 is what the feature file reads; v1 is
// older (no items, amount an int), v3 newer (an extra field, items without
// a default); bad changes amount to a string.
var evolution = map[string]string{
	"v1.avsc":  paymentSchema(fUserID, `{"name":"amount","type":"int"}`, fTS),
	"v2.avsc":  paymentSchema(fUserID, fAmount, `{"name":"items","type":"long","default":1}`, fFee, fTS),
	"v3.avsc":  paymentSchema(fUserID, fAmount, `{"name":"items","type":"long"}`, fFee, fTS, `{"name":"channel","type":"string","default":"web"}`),
	"bad.avsc": paymentSchema(fUserID, fAmountText, fTS),
}

const evolutionFeatures = `
kafka:
  schema_registry: {url: "{{URL}}"}
entities:
  - {name: user, key: user_id}
sources:
  - name: payments
    topic: payments
    schema: v2.avsc
    event_time: ts
    encoding: {{ENCODING}}
{{WRITERS}}
features:
  - {name: amount_sum, version: 1, entity: user, source: payments, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: items_sum, version: 1, entity: user, source: payments, aggregation: sum, field: items, window: 1d, owner: t, description: d}
  - {name: big_count, version: 1, entity: user, source: payments, aggregation: count, window: 1d, owner: t, description: d, where: "amount > 10.0"}
`

func evolutionConfig(t *testing.T, encoding, writers, url string) *config.File {
	return evolutionConfigTB(t, encoding, writers, url)
}

func evolutionConfigTB(t testing.TB, encoding, writers, url string) *config.File {
	t.Helper()
	dir := t.TempDir()
	text := strings.NewReplacer("{{URL}}", url, "{{ENCODING}}", encoding, "{{WRITERS}}", writers).Replace(evolutionFeatures)
	files := map[string]string{"features.yaml": text}
	for k, v := range evolution {
		files[k] = v
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "features.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func evolutionSchema(t *testing.T, name string) *schemas.Schema {
	t.Helper()
	s, err := schemas.Parse([]byte(evolution[name]))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// evolutionCase is one record and what decoding it must give.
type evolutionCase struct {
	name   string
	writer string
	rec    map[string]any
	reason string    // "" for valid
	detail string    // part of the rejection's detail
	values []float64 // amount, items, where(amount > 10)
}

var evolutionCases = []evolutionCase{
	{name: "the reader's own schema", writer: "v2.avsc",
		rec:    map[string]any{"user_id": "u-1", "amount": 12.5, "items": int64(3), "fee": nil, "ts": now - 1000},
		values: []float64{12.5, 3, 1}},
	{name: "an older writer: int amount promotes, missing items takes the default", writer: "v1.avsc",
		rec:    map[string]any{"user_id": "u-1", "amount": int32(7), "ts": now - 1000},
		values: []float64{7, 1, 0}},
	{name: "a newer writer: extra field ignored", writer: "v3.avsc",
		rec:    map[string]any{"user_id": "u-1", "amount": 20.0, "items": int64(2), "fee": map[string]any{"double": 0.5}, "ts": now - 1000, "channel": "app"},
		values: []float64{20, 2, 1}},
	{name: "an incompatible writer is dead-lettered", writer: "bad.avsc",
		rec:    map[string]any{"user_id": "u-1", "amount": "12.5", "ts": now - 1000},
		reason: events.ReasonIncompatibleSchema, detail: `field "amount" is string in writer schema featurepipe.test.Payment and double in reader schema`},
}

func checkEvolution(t *testing.T, dec *events.Decoder, plan *events.Plan, tc evolutionCase, value []byte) {
	t.Helper()
	var ev events.Event
	rej := dec.Decode(plan, []byte("u-1"), value, now, &ev)
	if tc.reason != "" {
		if rej == nil || rej.Reason != tc.reason || !strings.Contains(rej.Detail, tc.detail) || rej.Temporary {
			t.Fatalf("rejection = %+v, want %s containing %q", rej, tc.reason, tc.detail)
		}
		return
	}
	if rej != nil {
		t.Fatalf("rejected: %v", rej)
	}
	if ev.Key != "u-1" || ev.TS != now-1000 {
		t.Errorf("key, ts = %q, %d", ev.Key, ev.TS)
	}
	if len(ev.Values) != len(tc.values) {
		t.Fatalf("values = %v, want %v", ev.Values, tc.values)
	}
	for i := range tc.values {
		if ev.Values[i] != tc.values[i] {
			t.Fatalf("values = %v, want %v", ev.Values, tc.values)
		}
	}
}

// Single-object records are matched to their writer by fingerprint among
// the source's schema and its writer_schemas, then read as the source's
// schema by Avro's resolution rules.
func TestSchemaEvolutionSingleObject(t *testing.T) {
	cfg := evolutionConfig(t, "single-object", "    writer_schemas: [v1.avsc, v3.avsc, bad.avsc]", "http://127.0.0.1:1")
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dec := events.NewDecoder(cfg, events.Limits{})
	for _, tc := range evolutionCases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := evolutionSchema(t, tc.writer).Encode(nil, tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // the second time from the cached resolution
				checkEvolution(t, dec, plans["payments"], tc, b)
			}
		})
	}
	t.Run("a writer schema the file does not declare is unknown", func(t *testing.T) {
		undeclared := paymentSchema(fUserID, fAmount, fTS, `{"name":"x","type":"int"}`)
		s, err := schemas.Parse([]byte(undeclared))
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Encode(nil, map[string]any{"user_id": "u-1", "amount": 1.0, "ts": now, "x": int32(1)})
		if err != nil {
			t.Fatal(err)
		}
		checkEvolution(t, dec, plans["payments"], evolutionCase{reason: events.ReasonUnknownSchema, detail: "unknown schema fingerprint"}, b)
	})
}

// Confluent records are matched to their writer by the schema id in the
// registry, fetched once per id.
func TestSchemaEvolutionConfluent(t *testing.T) {
	reg := registrytest.New()
	url, stop := reg.Start()
	defer stop()
	cfg := evolutionConfig(t, "confluent", "", url)
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dec := events.NewDecoder(cfg, events.Limits{})
	// Register the versions in order as the producers would; bad.avsc
	// under another subject (the registry's BACKWARD check refuses it under
	// payments-value), as a producer writing to the wrong topic would.
	producer, err := schemaregistry.New(schemaregistry.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]uint32{}
	for _, w := range []string{"v1.avsc", "v2.avsc", "v3.avsc", "bad.avsc"} {
		subject := "payments-value"
		if w == "bad.avsc" {
			subject = "other-value"
		}
		if ids[w], err = producer.Register(context.Background(), subject, evolutionSchema(t, w)); err != nil {
			t.Fatalf("register %s: %v", w, err)
		}
	}
	for _, tc := range evolutionCases {
		t.Run(tc.name, func(t *testing.T) {
			id := ids[tc.writer]
			b, err := evolutionSchema(t, tc.writer).EncodeConfluent(nil, id, tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				checkEvolution(t, dec, plans["payments"], tc, b)
			}
			// Once the id is known, a writer that resolves to the source's
			// schema as the identity (v2 itself, v3 with an extra field) is
			// read through a projection, exactly as the generic path reads it.
			var fast, gen events.Event
			if got, want := events.DecodeFast(dec, plans["payments"], []byte("u-1"), b, now, &fast), tc.writer == "v2.avsc" || tc.writer == "v3.avsc"; got != want {
				t.Errorf("answered by the fast path %v, want %v", got, want)
			}
			rf := dec.Decode(plans["payments"], []byte("u-1"), b, now, &fast)
			rg := dec.Decode(events.GenericPlan(plans["payments"]), []byte("u-1"), b, now, &gen)
			sameDecode(t, tc.name, rf, rg, &fast, &gen)
			if n := reg.IDFetches(int(id)); n != 1 {
				t.Errorf("schema id %d fetched %d times for 3 records, want 1", id, n)
			}
		})
	}
	t.Run("an id the registry does not know is an unknown schema", func(t *testing.T) {
		b, err := evolutionSchema(t, "v2.avsc").EncodeConfluent(nil, 4242, evolutionCases[0].rec)
		if err != nil {
			t.Fatal(err)
		}
		checkEvolution(t, dec, plans["payments"], evolutionCase{reason: events.ReasonUnknownSchema, detail: "schema id 4242"}, b)
	})
	t.Run("a single-object record on a confluent source is not Avro in its encoding", func(t *testing.T) {
		b, err := evolutionSchema(t, "v2.avsc").Encode(nil, evolutionCases[0].rec)
		if err != nil {
			t.Fatal(err)
		}
		checkEvolution(t, dec, plans["payments"], evolutionCase{reason: events.ReasonNotAvro, detail: "magic byte 0xc3"}, b)
	})
}

// A registry that cannot be reached is not the record's fault: the
// rejection is Temporary (never dead-lettered) and names the registry.
func TestUnreachableRegistryIsATemporaryRejection(t *testing.T) {
	reg := registrytest.New()
	url, stop := reg.Start()
	stop() // nothing listens at url any more
	cfg := evolutionConfig(t, "confluent", "", url)
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client, err := schemaregistry.New(schemaregistry.Options{URL: url, RetryFor: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dec := events.NewDecoderWith(cfg, events.Limits{}, client)
	b, err := evolutionSchema(t, "v2.avsc").EncodeConfluent(nil, 1, evolutionCases[0].rec)
	if err != nil {
		t.Fatal(err)
	}
	var ev events.Event
	rej := dec.Decode(plans["payments"], []byte("u-1"), b, now, &ev)
	if rej == nil || !rej.Temporary || rej.Reason != events.ReasonSchemaRegistry || !strings.Contains(rej.Detail, "schema registry unavailable") {
		t.Fatalf("rejection = %+v, want a Temporary %s", rej, events.ReasonSchemaRegistry)
	}
}

// BenchmarkDecodeEvolved decodes records of the reader schema itself, of an
// older writer (one promoted field, one default) found by fingerprint, and
// of the reader schema in Confluent's wire format (id cached after the
// first record): the cost of resolution per record.
func BenchmarkDecodeEvolved(b *testing.B) {
	reg := registrytest.New()
	url, stop := reg.Start()
	defer stop()
	for _, bc := range []struct {
		name, encoding, writer string
		rec                    map[string]any
	}{
		{"reader schema", "single-object", "v2.avsc", evolutionCases[0].rec},
		{"older writer", "single-object", "v1.avsc", evolutionCases[1].rec},
		{"confluent reader schema", "confluent", "v2.avsc", evolutionCases[0].rec},
	} {
		b.Run(bc.name, func(b *testing.B) {
			writers := ""
			if bc.encoding == "single-object" {
				writers = "    writer_schemas: [v1.avsc]"
			}
			cfg := evolutionConfigTB(b, bc.encoding, writers, url)
			plans, err := events.Plans(cfg)
			if err != nil {
				b.Fatal(err)
			}
			dec := events.NewDecoder(cfg, events.Limits{})
			s, err := schemas.Parse([]byte(evolution[bc.writer]))
			if err != nil {
				b.Fatal(err)
			}
			var value []byte
			if bc.encoding == "confluent" {
				c, _ := schemaregistry.New(schemaregistry.Options{URL: url})
				id, err := c.Register(context.Background(), "payments-value", s)
				if err != nil {
					b.Fatal(err)
				}
				value, err = s.EncodeConfluent(nil, id, bc.rec)
				if err != nil {
					b.Fatal(err)
				}
			} else if value, err = s.Encode(nil, bc.rec); err != nil {
				b.Fatal(err)
			}
			key := []byte("u-1")
			var ev events.Event
			b.ReportAllocs()
			for b.Loop() {
				if rej := dec.Decode(plans["payments"], key, value, now, &ev); rej != nil {
					b.Fatal(rej)
				}
			}
		})
	}
}
