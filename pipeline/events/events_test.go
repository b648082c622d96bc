package events_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/schemas"
)

// Writer schemas of the test feature file. payment.avsc is what the features
// read; the variants are other writer versions of the same record, named by
// sources that feed no feature, so the decoder knows their fingerprints but a
// record written with one of them lacks or mistypes a field the plan needs.
const (
	fUserID     = `{"name":"user_id","type":"string"}`
	fAmount     = `{"name":"amount","type":"double"}`
	fFee        = `{"name":"fee","type":["null","double"],"default":null}`
	fItems      = `{"name":"items","type":"int"}`
	fTS         = `{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}}`
	fAmountText = `{"name":"amount","type":"string"}`
	fTSText     = `{"name":"ts","type":"string"}`
	fAt         = `{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}`
	fUserIDBool = `{"name":"user_id","type":"boolean"}`
)

func paymentSchema(fields ...string) string {
	return `{"type":"record","name":"Payment","namespace":"featurepipe.test","fields":[` + strings.Join(fields, ",") + `]}`
}

var testSchemas = map[string]string{
	"payment.avsc":          paymentSchema(fUserID, fAmount, fFee, fItems, fTS),
	"payment_noamount.avsc": paymentSchema(fUserID, fFee, fItems, fTS),
	"payment_textamt.avsc":  paymentSchema(fUserID, fAmountText, fFee, fItems, fTS),
	"payment_textts.avsc":   paymentSchema(fUserID, fAmount, fFee, fItems, fTSText, fAt),
	"payment_boolkey.avsc":  paymentSchema(fUserIDBool, fAmount, fFee, fItems, fTS),
	"visit.avsc": `{"type":"record","name":"Visit","namespace":"featurepipe.test","fields":[` + fUserID + `,` +
		`{"name":"merchant","type":"string"},{"name":"card","type":"long"},{"name":"flag","type":["null","boolean"],"default":null},` + fAmount + `,` + fTS + `]}`,
}

// testFeatures feeds payments with five features over three distinct fields
// (amount twice, fee, items) and a count, so the plan must deduplicate.
const testFeatures = `
entities:
  - {name: user, key: user_id}
sources:
  - {name: payments, topic: payments, schema: payment.avsc, event_time: ts}
  - {name: logins, topic: logins, schema: login.avsc, event_time: ts}
  - {name: payments_v0, topic: payments-v0, schema: payment_noamount.avsc, event_time: ts}
  - {name: payments_text_amount, topic: payments-text-amount, schema: payment_textamt.avsc, event_time: ts}
  - {name: payments_text_ts, topic: payments-text-ts, schema: payment_textts.avsc, event_time: at}
  - {name: payments_bool_key, topic: payments-bool-key, schema: payment_boolkey.avsc, event_time: ts}
features:
  - {name: pay_amount_sum_1d, version: 1, entity: user, source: payments, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: pay_fee_max_7d, version: 1, entity: user, source: payments, aggregation: max, field: fee, window: 7d, owner: t, description: d}
  - {name: pay_amount_avg_30d, version: 1, entity: user, source: payments, aggregation: avg, field: amount, window: 30d, owner: t, description: d}
  - {name: pay_count_7d, version: 1, entity: user, source: payments, aggregation: count, window: 7d, owner: t, description: d}
  - {name: pay_items_sum_1d, version: 1, entity: user, source: payments, aggregation: sum, field: items, window: 1d, owner: t, description: d}
  - {name: login_count_1h, version: 1, entity: user, source: logins, aggregation: count, window: 1h, owner: t, description: d}
`

// loadConfig writes the test feature file and its schemas to a temporary
// directory and loads it.
func loadConfig(tb testing.TB) *config.File {
	tb.Helper()
	return loadConfigWith(tb, testFeatures)
}

// loadConfigWith is loadConfig with another features file over the same
// schemas.
func loadConfigWith(tb testing.TB, features string) *config.File {
	tb.Helper()
	dir := tb.TempDir()
	files := map[string]string{"features.yaml": features}
	for name, text := range testSchemas {
		files[name] = text
	}
	login, err := schemas.Files.ReadFile("login.avsc")
	if err != nil {
		tb.Fatal(err)
	}
	files["login.avsc"] = string(login)
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "features.yaml"))
	if err != nil {
		tb.Fatalf("load test feature file: %v", err)
	}
	return cfg
}

func sourceSchema(tb testing.TB, cfg *config.File, name string) *schemas.Schema {
	tb.Helper()
	src, ok := cfg.Source(name)
	if !ok {
		tb.Fatalf("no source %q", name)
	}
	return src.Schema
}

func encode(tb testing.TB, s *schemas.Schema, native map[string]any) []byte {
	tb.Helper()
	b, err := s.Encode(nil, native)
	if err != nil {
		tb.Fatalf("encode %v: %v", native, err)
	}
	return b
}

// now is the decode time of every test; events default to a minute before.
var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixMilli()

// payment returns a valid native payment with the given fields replaced
// (a nil value deletes the field).
func payment(with map[string]any) map[string]any {
	rec := map[string]any{
		"user_id": "u-1",
		"amount":  12.5,
		"fee":     map[string]any{"double": 0.25},
		"items":   int32(3),
		"ts":      now - 60_000,
	}
	for k, v := range with {
		if v == nil {
			delete(rec, k)
			continue
		}
		rec[k] = v
	}
	return rec
}

func TestDecode(t *testing.T) {
	cfg := loadConfig(t)
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan := plans["payments"]
	pay := sourceSchema(t, cfg, "payments")
	dec := events.NewDecoder(cfg, events.Limits{})

	valid := encode(t, pay, payment(nil))
	unnamed, err := schemas.Load(schemas.Files, "transaction.avsc")
	if err != nil {
		t.Fatal(err)
	}
	bigKey := strings.Repeat("k", 10<<20)
	const day = 24 * 60 * 60 * 1000

	type want struct {
		reason string // "" for a valid event
		detail string // part of the Detail
		event  events.Event
	}
	tests := []struct {
		name  string
		key   string
		value []byte
		want  want
	}{
		// Framing.
		{"garbage bytes are not Avro", "u-1", []byte("hello, world"),
			want{reason: events.ReasonNotAvro, detail: "marker 0x68 0x65"}},
		{"empty value is not Avro", "u-1", nil,
			want{reason: events.ReasonNotAvro, detail: "0 bytes"}},
		{"marker only is not Avro", "u-1", []byte{0xC3, 0x01},
			want{reason: events.ReasonNotAvro, detail: "2 bytes"}},
		{"header without body is malformed", "u-1", valid[:10],
			want{reason: events.ReasonMalformed, detail: "featurepipe.test.Payment"}},
		{"truncated Avro body is malformed", "u-1", valid[:len(valid)-3],
			want{reason: events.ReasonMalformed, detail: "featurepipe.test.Payment"}},
		{"garbage after a known header is malformed", "u-1", append(slices.Clone(valid[:10]), 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01),
			want{reason: events.ReasonMalformed, detail: "featurepipe.test.Payment"}},
		{"trailing bytes after the record are malformed", "u-1", append(slices.Clone(valid), 0x00),
			want{reason: events.ReasonMalformed, detail: "1 trailing bytes"}},
		{"schema the feature file does not name is unknown", "u-1",
			encode(t, unnamed, map[string]any{"user_id": "u-1", "merchant_id": "m", "amount": 1.0, "currency": "EUR", "ts": now}),
			want{reason: events.ReasonUnknownSchema, detail: fmt.Sprintf("0x%016x", unnamed.Fingerprint)}},

		// Fields.
		{"missing value field", "u-1", encode(t, sourceSchema(t, cfg, "payments_v0"), payment(map[string]any{"amount": nil})),
			want{reason: events.ReasonIncompatibleSchema, detail: `field "amount" is not in writer schema featurepipe.test.Payment and reader schema featurepipe.test.Payment gives it no default`}},
		{"wrongly typed value field", "u-1", encode(t, sourceSchema(t, cfg, "payments_text_amount"), payment(map[string]any{"amount": "12.5"})),
			want{reason: events.ReasonIncompatibleSchema, detail: `field "amount" is string in writer schema featurepipe.test.Payment and double in reader schema`}},
		{"null value field", "u-1", encode(t, pay, payment(map[string]any{"fee": map[string]any{"null": nil}})),
			want{reason: events.ReasonInvalidField, detail: `field "fee": null`}},
		{"record of another source is another record", "u-1",
			encode(t, sourceSchema(t, cfg, "logins"), map[string]any{"user_id": "u-1", "country": "DE", "success": true, "ts": now}),
			want{reason: events.ReasonIncompatibleSchema, detail: `writer record featurepipe.demo.Login is not reader record featurepipe.test.Payment`}},
		{"wrongly typed event time", "u-1",
			encode(t, sourceSchema(t, cfg, "payments_text_ts"), payment(map[string]any{"ts": "yesterday", "at": now})),
			want{reason: events.ReasonIncompatibleSchema, detail: `field "ts" is string in writer schema`}},
		{"wrongly typed entity key", "true", encode(t, sourceSchema(t, cfg, "payments_bool_key"), payment(map[string]any{"user_id": true})),
			want{reason: events.ReasonIncompatibleSchema, detail: `field "user_id" is boolean in writer schema`}},
		{"NaN amount", "u-1", encode(t, pay, payment(map[string]any{"amount": math.NaN()})),
			want{reason: events.ReasonNonFinite, detail: `field "amount" is NaN`}},
		{"+Inf amount", "u-1", encode(t, pay, payment(map[string]any{"amount": math.Inf(1)})),
			want{reason: events.ReasonNonFinite, detail: `field "amount" is +Inf`}},
		{"-Inf amount", "u-1", encode(t, pay, payment(map[string]any{"amount": math.Inf(-1)})),
			want{reason: events.ReasonNonFinite, detail: `field "amount" is -Inf`}},
		{"NaN in a nullable field", "u-1", encode(t, pay, payment(map[string]any{"fee": map[string]any{"double": math.NaN()}})),
			want{reason: events.ReasonNonFinite, detail: `field "fee" is NaN`}},

		// Keys.
		{"empty key", "", encode(t, pay, payment(map[string]any{"user_id": ""})),
			want{reason: events.ReasonEmptyKey, detail: `field "user_id" is empty`}},
		{"10 MB key is too large", bigKey, encode(t, pay, payment(map[string]any{"user_id": bigKey})),
			want{reason: events.ReasonKeyTooLarge, detail: "is 10485760 bytes; the limit is 1024"}},
		{"Kafka key differs from the entity key", "u-2", valid,
			want{reason: events.ReasonKeyMismatch, detail: `record key "u-2" differs from field "user_id" = "u-1"`}},
		{"record without a Kafka key", "", valid,
			want{reason: events.ReasonKeyMismatch, detail: `record key "" differs`}},

		// Event time.
		{"timestamp before 1970", "u-1", encode(t, pay, payment(map[string]any{"ts": int64(-1)})),
			want{reason: events.ReasonTooOld, detail: "event time -1 is before 1970"}},
		{"timestamp 25h in the future", "u-1", encode(t, pay, payment(map[string]any{"ts": now + 25*60*60*1000})),
			want{reason: events.ReasonFuture, detail: fmt.Sprintf("event time %d is more than 24h0m0s after now (%d)", now+25*60*60*1000, now)}},
		{"timestamp 1 ms past now + MaxFuture", "u-1", encode(t, pay, payment(map[string]any{"ts": now + day + 1})),
			want{reason: events.ReasonFuture, detail: "more than 24h0m0s after now"}},
		{"timestamp exactly at now + MaxFuture is valid", "u-1", encode(t, pay, payment(map[string]any{"ts": now + day})),
			want{event: events.Event{Key: "u-1", TS: now + day, Values: []float64{12.5, 0.25, 3}}}},
		{"timestamp at the epoch is valid", "u-1", encode(t, pay, payment(map[string]any{"ts": int64(0)})),
			want{event: events.Event{Key: "u-1", TS: 0, Values: []float64{12.5, 0.25, 3}}}},

		// Valid.
		{"valid event has values in Plan.Fields order", "u-1", valid,
			want{event: events.Event{Key: "u-1", TS: now - 60_000, Values: []float64{12.5, 0.25, 3}}}},
		{"key of exactly MaxKeyBytes is valid", strings.Repeat("k", 1024), encode(t, pay, payment(map[string]any{"user_id": strings.Repeat("k", 1024), "amount": -7.0, "items": int32(0)})),
			want{event: events.Event{Key: strings.Repeat("k", 1024), TS: now - 60_000, Values: []float64{-7, 0.25, 0}}}},
	}

	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev events.Event
			rej := dec.Decode(plan, []byte(tt.key), tt.value, now, &ev)
			if tt.want.reason == "" {
				if rej != nil {
					t.Fatalf("rejected valid event: %v", rej)
				}
				if ev.Key != tt.want.event.Key || ev.TS != tt.want.event.TS || !slices.Equal(ev.Values, tt.want.event.Values) {
					t.Fatalf("event = {%.20q %d %v}, want {%.20q %d %v}", ev.Key, ev.TS, ev.Values,
						tt.want.event.Key, tt.want.event.TS, tt.want.event.Values)
				}
				return
			}
			seen[tt.want.reason] = true
			if rej == nil {
				t.Fatalf("accepted, want rejection %s", tt.want.reason)
			}
			if rej.Reason != tt.want.reason {
				t.Fatalf("reason = %s (%s), want %s", rej.Reason, rej.Detail, tt.want.reason)
			}
			if !strings.Contains(rej.Detail, tt.want.detail) {
				t.Fatalf("detail %q does not contain %q", rej.Detail, tt.want.detail)
			}
			if len(rej.Detail) > 1024 {
				t.Fatalf("detail is %d bytes; a bad record must not produce a huge message", len(rej.Detail))
			}
			if got := rej.Error(); got != rej.Reason+": "+rej.Detail {
				t.Fatalf("Error() = %q, want reason: detail", got)
			}
		})
	}
	t.Run("a where that cannot be evaluated rejects the record", func(t *testing.T) {
		cfg := loadConfigWith(t, filteredFeatures)
		plans, err := events.Plans(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var ev events.Event
		rej := events.NewDecoder(cfg, events.Limits{}).Decode(plans["payments"], []byte("u-1"),
			encode(t, sourceSchema(t, cfg, "payments"), payment(map[string]any{"amount": 1e30})), now, &ev)
		if rej == nil || rej.Reason != events.ReasonFilterError ||
			!strings.Contains(rej.Detail, `feature pay_small_count_1d@1: where "int(amount) < 1000": integer overflow`) {
			t.Fatalf("amount 1e30 under int(amount) < 1000: got %v, want %s naming the feature, the where and the error", rej, events.ReasonFilterError)
		}
		seen[rej.Reason] = true
	})
	t.Run("a long beyond 2^53 that last keeps is rejected", func(t *testing.T) {
		cfg := loadConfigWith(t, visitFeatures+"  - {name: last_card, version: 1, entity: user, source: visits, aggregation: last, field: card, window: 7d, owner: t, description: d}\n")
		plans, err := events.Plans(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var ev events.Event
		rej := events.NewDecoder(cfg, events.Limits{}).Decode(plans["visits"], []byte("u-1"),
			encode(t, sourceSchema(t, cfg, "visits"), visit("m", 1<<53+1, true, 1, now-1000)), now, &ev)
		if rej == nil || rej.Reason != events.ReasonInexactLong || !strings.Contains(rej.Detail, `field "card" is 9007199254740993, beyond ±2^53`) {
			t.Fatalf("card 2^53+1 under last: got %v, want %s naming the field and the value", rej, events.ReasonInexactLong)
		}
		seen[rej.Reason] = true
	})
	t.Run("a string that last keeps must be UTF-8 and short", func(t *testing.T) {
		cfg := loadConfigWith(t, visitFeatures+"  - {name: last_merchant, version: 1, entity: user, source: visits, aggregation: last, field: merchant, window: 7d, owner: t, description: d}\n")
		plans, err := events.Plans(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var ev events.Event
		rej := events.NewDecoder(cfg, events.Limits{}).Decode(plans["visits"], []byte("u-1"),
			encode(t, sourceSchema(t, cfg, "visits"), visit("caf\xe9", 1, true, 1, now-1000)), now, &ev)
		if rej == nil || rej.Reason != events.ReasonInvalidString || !strings.Contains(rej.Detail, `field "merchant" is not valid UTF-8`) {
			t.Fatalf("merchant caf\\xe9 under last: got %v, want %s naming the field", rej, events.ReasonInvalidString)
		}
		seen[rej.Reason] = true
	})
	t.Run("every reason code is exercised", func(t *testing.T) {
		for _, r := range events.Reasons() {
			if !seen[r] {
				t.Errorf("no test row rejects with %s", r)
			}
		}
		if len(seen) != len(events.Reasons()) {
			t.Errorf("rows use %d reasons, Reasons() lists %d", len(seen), len(events.Reasons()))
		}
	})
}

func TestDecodeReusesValues(t *testing.T) {
	cfg := loadConfig(t)
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan, pay := plans["payments"], sourceSchema(t, cfg, "payments")
	dec := events.NewDecoder(cfg, events.Limits{})
	first := encode(t, pay, payment(nil))
	second := encode(t, pay, payment(map[string]any{"user_id": "u-2", "amount": 1.0, "fee": map[string]any{"double": 2.0}, "items": int32(4)}))

	var ev events.Event
	if rej := dec.Decode(plan, []byte("u-1"), first, now, &ev); rej != nil {
		t.Fatal(rej)
	}
	backing := &ev.Values[0]
	if rej := dec.Decode(plan, []byte("u-2"), second, now, &ev); rej != nil {
		t.Fatal(rej)
	}
	if !slices.Equal(ev.Values, []float64{1, 2, 4}) || ev.Key != "u-2" {
		t.Fatalf("second decode: %+v, want u-2 [1 2 4] (no values left from the first)", ev)
	}
	if &ev.Values[0] != backing {
		t.Fatal("out.Values was reallocated; Decode must reuse it")
	}
}

func TestLimits(t *testing.T) {
	cfg := loadConfig(t)
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan, pay := plans["payments"], sourceSchema(t, cfg, "payments")
	const hour = 60 * 60 * 1000

	tests := []struct {
		name   string
		limits events.Limits
		keyLen int   // entity key length in bytes
		ts     int64 // event time
		want   string
	}{
		{"zero limits: 1024-byte key is allowed", events.Limits{}, 1024, now, ""},
		{"zero limits: 1025-byte key is too large", events.Limits{}, 1025, now, events.ReasonKeyTooLarge},
		{"zero limits: now+24h is allowed", events.Limits{}, 3, now + 24*hour, ""},
		{"zero limits: now+24h+1ms is in the future", events.Limits{}, 3, now + 24*hour + 1, events.ReasonFuture},
		{"negative limits mean the defaults: key", events.Limits{MaxFuture: -time.Hour, MaxKeyBytes: -1}, 1025, now, events.ReasonKeyTooLarge},
		{"negative limits mean the defaults: time", events.Limits{MaxFuture: -time.Hour, MaxKeyBytes: -1}, 1024, now + 24*hour, ""},
		{"MaxKeyBytes is honoured", events.Limits{MaxKeyBytes: 8}, 9, now, events.ReasonKeyTooLarge},
		{"MaxKeyBytes allows exactly its length", events.Limits{MaxKeyBytes: 8}, 8, now, ""},
		{"MaxFuture is honoured", events.Limits{MaxFuture: time.Hour}, 3, now + hour + 1, events.ReasonFuture},
		{"MaxFuture allows exactly its length", events.Limits{MaxFuture: time.Hour}, 3, now + hour, ""},
		{"MaxFuture may exceed the default", events.Limits{MaxFuture: 48 * time.Hour}, 3, now + 47*hour, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := events.NewDecoder(cfg, tt.limits)
			key := strings.Repeat("k", tt.keyLen)
			rec := encode(t, pay, payment(map[string]any{"user_id": key, "ts": tt.ts}))
			var ev events.Event
			rej := dec.Decode(plan, []byte(key), rec, now, &ev)
			switch {
			case tt.want == "" && rej != nil:
				t.Fatalf("rejected: %v", rej)
			case tt.want == "" && (ev.Key != key || ev.TS != tt.ts):
				t.Fatalf("event = {%.20q %d}, want {%.20q %d}", ev.Key, ev.TS, key, tt.ts)
			case tt.want != "" && (rej == nil || rej.Reason != tt.want):
				t.Fatalf("got %v, want reason %s", rej, tt.want)
			}
		})
	}
}

func TestPlans(t *testing.T) {
	cfg := loadConfig(t)
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("only sources that feed a feature have a plan, by topic", func(t *testing.T) {
		var topics []string
		for topic := range plans {
			topics = append(topics, topic)
		}
		slices.Sort(topics)
		if want := []string{"logins", "payments"}; !slices.Equal(topics, want) {
			t.Fatalf("plans for %v, want %v", topics, want)
		}
	})
	p := plans["payments"]
	t.Run("plan names its source, entity and key field", func(t *testing.T) {
		if p.Source == nil || p.Source.Name != "payments" || p.Topic != "payments" || p.Entity != "user" ||
			!slices.Equal(p.KeyFields, []string{"user_id"}) || !slices.Equal(p.EntityKeys, p.KeyFields) || len(p.Rekeys) != 0 {
			t.Fatalf("plan = source %v topic %s entity %q keys %q/%q", p.Source, p.Topic, p.Entity, p.KeyFields, p.EntityKeys)
		}
	})
	t.Run("fields are deduplicated, in order of first use", func(t *testing.T) {
		if want := []string{"amount", "fee", "items"}; !slices.Equal(p.Fields, want) {
			t.Fatalf("Fields = %v, want %v", p.Fields, want)
		}
	})
	t.Run("features in file order, each pointing at its field; -1 for count", func(t *testing.T) {
		want := []struct {
			id  string
			idx int
		}{
			{"pay_amount_sum_1d@1", 0}, {"pay_fee_max_7d@1", 1}, {"pay_amount_avg_30d@1", 0},
			{"pay_count_7d@1", -1}, {"pay_items_sum_1d@1", 2},
		}
		if len(p.Features) != len(want) {
			t.Fatalf("%d features, want %d", len(p.Features), len(want))
		}
		for i, w := range want {
			fp := p.Features[i]
			if fp.ID != w.id || fp.FieldIdx != w.idx || fp.Feature == nil || fp.Feature.ID != w.id {
				t.Errorf("feature %d = %s idx %d, want %s idx %d", i, fp.ID, fp.FieldIdx, w.id, w.idx)
			}
			if fp.Kind != fp.Feature.Aggregation || fp.Window != fp.Feature.Window {
				t.Errorf("feature %s: kind/window %v/%v differ from the definition", fp.ID, fp.Kind, fp.Window)
			}
		}
	})
	t.Run("Value reads the feature's field, 0 for count", func(t *testing.T) {
		ev := &events.Event{Values: []float64{12.5, 0.25, 3}}
		var got []float64
		for i := range p.Features {
			got = append(got, p.Features[i].Value(ev))
		}
		if want := []float64{12.5, 0.25, 12.5, 0, 3}; !slices.Equal(got, want) {
			t.Fatalf("values = %v, want %v", got, want)
		}
	})
	t.Run("a plan without value fields", func(t *testing.T) {
		l := plans["logins"]
		if len(l.Fields) != 0 || len(l.Features) != 1 || l.Features[0].FieldIdx != -1 {
			t.Fatalf("logins plan: fields %v, features %d", l.Fields, len(l.Features))
		}
	})
}

func TestConcurrentDecode(t *testing.T) {
	cfg := loadConfig(t)
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan, pay := plans["payments"], sourceSchema(t, cfg, "payments")
	dec := events.NewDecoder(cfg, events.Limits{})
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		key := fmt.Sprintf("u-%d", g)
		rec := encode(t, pay, payment(map[string]any{"user_id": key, "amount": float64(g)}))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ev events.Event
			for range 200 {
				if rej := dec.Decode(plan, []byte(key), rec, now, &ev); rej != nil || ev.Key != key || ev.Values[0] != float64(g) {
					errs <- fmt.Sprintf("goroutine %d: %v %+v", g, rej, ev)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// BenchmarkDecode decodes and validates one valid transaction of the demo
// feature file (schemas/demo.yaml: five fields, one value field read by five
// features) per iteration and reports events/s.
// demoConfig loads schemas/demo.yaml, without its where lines unless
// filtered: the same features, with or without the demo's filter.
func demoConfig(b testing.TB, filtered bool) *config.File {
	raw, err := schemas.Files.ReadFile("demo.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if !filtered {
		lines := strings.Split(string(raw), "\n")
		lines = slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "where:") })
		raw = []byte(strings.Join(lines, "\n"))
	}
	cfg, err := config.Parse("demo.yaml", raw, schemas.Files, ".")
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, f := range cfg.Features {
		if f.Filter != nil {
			n++
		}
	}
	if filtered != (n > 0) {
		b.Fatalf("demo.yaml has %d features with a where (filtered %v)", n, filtered)
	}
	return cfg
}

// BenchmarkDecode decodes a demo transaction for the demo's features
// without their wheres.
func BenchmarkDecode(b *testing.B) {
	cfg := demoConfig(b, false)
	plans, err := events.Plans(cfg)
	if err != nil {
		b.Fatal(err)
	}
	plan := plans["transactions"]
	dec := events.NewDecoder(cfg, events.Limits{})
	rec := encode(b, plan.Source.Schema, map[string]any{"user_id": "u0001", "merchant_id": "m042",
		"amount": 37.5, "currency": "EUR", "ts": now - 60_000})
	key := []byte("u0001")
	var ev events.Event
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if rej := dec.Decode(plan, key, rec, now, &ev); rej != nil {
			b.Fatal(rej)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// filteredFeatures feeds payments with features with and without a where,
// over a double (amount) and an int (items) field.
const filteredFeatures = `
entities:
  - {name: user, key: user_id}
sources:
  - {name: payments, topic: payments, schema: payment.avsc, event_time: ts}
features:
  - {name: pay_amount_sum_1d, version: 1, entity: user, source: payments, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: pay_big_sum_1d, version: 1, entity: user, source: payments, aggregation: sum, field: amount, window: 1d, owner: t, description: d, where: "amount > 10.0"}
  - {name: pay_odd_items_count_1d, version: 1, entity: user, source: payments, aggregation: count, window: 1d, owner: t, description: d, where: "items % 2 == 1 && user_id != 'u-0'"}
  - {name: pay_small_count_1d, version: 1, entity: user, source: payments, aggregation: count, window: 1d, owner: t, description: d, where: "int(amount) < 1000"}
`

// TestFilter: Decode evaluates every where of the plan on the record and
// FeaturePlan.Counts reports the outcome, per feature; features without a
// where count every event.
func TestFilter(t *testing.T) {
	cfg := loadConfigWith(t, filteredFeatures)
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan, pay := plans["payments"], sourceSchema(t, cfg, "payments")
	if plan.Width() != len(plan.Fields)+3 || !slices.Equal(plan.Fields, []string{"amount"}) {
		t.Fatalf("Fields %v, Width %d; want [amount] and width 4 (1 field + 3 wheres)", plan.Fields, plan.Width())
	}
	for i, want := range []bool{false, true, true, true} {
		if got := plan.Features[i].Filtered(); got != want {
			t.Errorf("feature %s: Filtered = %v, want %v", plan.Features[i].ID, got, want)
		}
	}
	dec := events.NewDecoder(cfg, events.Limits{})
	tests := []struct {
		name string
		rec  map[string]any
		want []bool // Counts per feature
	}{
		{"all hold", payment(map[string]any{"amount": 12.5, "items": int32(3)}), []bool{true, true, true, true}},
		{"none holds", payment(map[string]any{"amount": 5000.0, "items": int32(4)}), []bool{true, true, false, false}},
		{"boundary: amount == 10 is not > 10", payment(map[string]any{"amount": 10.0, "items": int32(5)}), []bool{true, false, true, true}},
		{"string comparison", payment(map[string]any{"user_id": "u-0", "amount": 1.0, "items": int32(1)}), []bool{true, false, false, true}},
	}
	var ev events.Event // reused across records, as the callers do
	for _, tt := range tests {
		key, _ := tt.rec["user_id"].(string)
		if rej := dec.Decode(plan, []byte(key), encode(t, pay, tt.rec), now, &ev); rej != nil {
			t.Fatalf("%s: rejected: %v", tt.name, rej)
		}
		var got []bool
		for i := range plan.Features {
			got = append(got, plan.Features[i].Counts(&ev))
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: Counts = %v, want %v", tt.name, got, tt.want)
		}
		if ev.Values[0] != tt.rec["amount"] || plan.Features[1].Value(&ev) != tt.rec["amount"] {
			t.Errorf("%s: Values %v; want amount %v first", tt.name, ev.Values, tt.rec["amount"])
		}
	}
	t.Run("features of a plan without wheres always count", func(t *testing.T) {
		plain := loadConfig(t)
		ps, err := events.Plans(plain)
		if err != nil {
			t.Fatal(err)
		}
		p := ps["payments"]
		if p.Width() != len(p.Fields) {
			t.Fatalf("Width %d, want len(Fields) %d", p.Width(), len(p.Fields))
		}
		var ev events.Event
		if rej := events.NewDecoder(plain, events.Limits{}).Decode(p, []byte("u-1"), encode(t, sourceSchema(t, plain, "payments"), payment(nil)), now, &ev); rej != nil {
			t.Fatal(rej)
		}
		for i := range p.Features {
			if p.Features[i].Filtered() || !p.Features[i].Counts(&ev) {
				t.Errorf("feature %s: filtered or not counted", p.Features[i].ID)
			}
		}
	})
}

// BenchmarkDecodeFiltered is BenchmarkDecode with the demo's where
// ("amount > 100.0 && currency != 'JPY'", on one of its features) and a
// record it keeps: the cost of a where on the hot path.
func BenchmarkDecodeFiltered(b *testing.B) {
	cfg := demoConfig(b, true)
	plans, err := events.Plans(cfg)
	if err != nil {
		b.Fatal(err)
	}
	plan := plans["transactions"]
	dec := events.NewDecoder(cfg, events.Limits{})
	rec := encode(b, plan.Source.Schema, map[string]any{"user_id": "u0001", "merchant_id": "m042",
		"amount": 137.5, "currency": "EUR", "ts": now - 60_000})
	key := []byte("u0001")
	var ev events.Event
	b.ReportAllocs()
	for b.Loop() {
		if rej := dec.Decode(plan, key, rec, now, &ev); rej != nil {
			b.Fatal(rej)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
