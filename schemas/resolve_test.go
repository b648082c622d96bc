package schemas_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/schemas"
)

func record(name string, fields ...string) string {
	return `{"type":"record","name":"` + name + `","namespace":"t","fields":[` + strings.Join(fields, ",") + `]}`
}

// The reader of every case: what a feature file names.
var readerText = record("Payment",
	`{"name":"user_id","type":"string"}`,
	`{"name":"amount","type":"double"}`,
	`{"name":"items","type":"long","default":7}`,
	`{"name":"fee","type":["null","double"],"default":null}`,
	`{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}}`)

func TestResolve(t *testing.T) {
	reader := mustParse(t, readerText)
	ts := time.UnixMilli(1_700_000_000_000).UTC()
	tests := []struct {
		name    string
		writer  string
		rec     map[string]any // encoded with writer, then decoded
		fields  []string       // nil: all reader fields
		err     string         // Resolve or Apply error, "" for none
		amount  float64
		items   int64
		fee     any // want value of fee after Apply (nil: null)
		changes bool
	}{
		{name: "the same schema resolves with nothing to do",
			writer: readerText,
			rec:    map[string]any{"user_id": "u", "amount": 2.5, "items": int64(3), "fee": map[string]any{"double": 0.5}, "ts": ts},
			amount: 2.5, items: 3, fee: 0.5},
		{name: "an older writer without a field takes the reader's default",
			writer: record("Payment", `{"name":"user_id","type":"string"}`, `{"name":"amount","type":"double"}`, `{"name":"ts","type":"long"}`),
			rec:    map[string]any{"user_id": "u", "amount": 2.5, "ts": ts.UnixMilli()},
			amount: 2.5, items: 7, fee: nil, changes: true},
		{name: "a newer writer with an extra field is read without it",
			writer: record("Payment", `{"name":"user_id","type":"string"}`, `{"name":"amount","type":"double"}`, `{"name":"items","type":"long"}`,
				`{"name":"fee","type":["null","double"]}`, `{"name":"ts","type":"long"}`, `{"name":"channel","type":"string"}`),
			rec:    map[string]any{"user_id": "u", "amount": 2.5, "items": int64(1), "fee": nil, "ts": ts.UnixMilli(), "channel": "web"},
			amount: 2.5, items: 1, fee: nil},
		{name: "int promotes to double and to long",
			writer: record("Payment", `{"name":"user_id","type":"string"}`, `{"name":"amount","type":"int"}`, `{"name":"items","type":"int"}`, `{"name":"ts","type":"long"}`),
			rec:    map[string]any{"user_id": "u", "amount": int32(4), "items": int32(9), "ts": ts.UnixMilli()},
			amount: 4, items: 9, fee: nil, changes: true},
		{name: "long and float promote to double",
			writer: record("Payment", `{"name":"user_id","type":"string"}`, `{"name":"amount","type":"float"}`, `{"name":"fee","type":["null","long"]}`, `{"name":"ts","type":"long"}`),
			rec:    map[string]any{"user_id": "u", "amount": float32(1.5), "fee": map[string]any{"long": int64(2)}, "ts": ts.UnixMilli()},
			amount: 1.5, items: 7, fee: 2.0, changes: true},
		{name: "a nullable writer field with a value is read as non-null",
			writer: record("Payment", `{"name":"user_id","type":"string"}`, `{"name":"amount","type":["null","double"]}`, `{"name":"ts","type":"long"}`),
			rec:    map[string]any{"user_id": "u", "amount": map[string]any{"double": 3.0}, "ts": ts.UnixMilli()},
			amount: 3, items: 7, fee: nil, changes: true},
		{name: "a nullable writer field that is null cannot be read as non-null",
			writer: record("Payment", `{"name":"user_id","type":"string"}`, `{"name":"amount","type":["null","double"]}`, `{"name":"ts","type":"long"}`),
			rec:    map[string]any{"user_id": "u", "amount": nil, "ts": ts.UnixMilli()},
			err:    `field "amount" is null; writer schema t.Payment allows null`},
		{name: "a missing field without a reader default is incompatible",
			writer: record("Payment", `{"name":"user_id","type":"string"}`, `{"name":"ts","type":"long"}`),
			rec:    map[string]any{"user_id": "u", "ts": ts.UnixMilli()},
			err:    `field "amount" is not in writer schema t.Payment and reader schema t.Payment gives it no default`},
		{name: "a type that does not promote is incompatible",
			writer: record("Payment", `{"name":"user_id","type":"string"}`, `{"name":"amount","type":"string"}`, `{"name":"ts","type":"long"}`),
			rec:    map[string]any{"user_id": "u", "amount": "2.5", "ts": ts.UnixMilli()},
			err:    `field "amount" is string in writer schema t.Payment and double in reader schema t.Payment`},
		{name: "double does not narrow to long",
			writer: record("Payment", `{"name":"user_id","type":"string"}`, `{"name":"amount","type":"double"}`, `{"name":"items","type":"double"}`, `{"name":"ts","type":"long"}`),
			rec:    map[string]any{"user_id": "u", "amount": 1.0, "items": 2.0, "ts": ts.UnixMilli()},
			err:    `field "items" is double in writer schema`},
		{name: "only the fields read are checked",
			writer: record("Payment", `{"name":"user_id","type":"string"}`, `{"name":"amount","type":"double"}`, `{"name":"items","type":"string"}`, `{"name":"ts","type":"long"}`),
			rec:    map[string]any{"user_id": "u", "amount": 1.25, "items": "many", "ts": ts.UnixMilli()},
			fields: []string{"user_id", "amount", "ts"},
			amount: 1.25},
		{name: "another record name is incompatible",
			writer: record("Login", `{"name":"user_id","type":"string"}`, `{"name":"amount","type":"double"}`, `{"name":"ts","type":"long"}`),
			rec:    map[string]any{"user_id": "u", "amount": 1.0, "ts": ts.UnixMilli()},
			err:    `writer record t.Login is not reader record t.Payment`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			writer := mustParse(t, tc.writer)
			b, err := writer.Encode(nil, tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			_, rec, err := schemas.NewSet(writer).Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			r, err := schemas.Resolve(writer, reader, tc.fields)
			if err == nil {
				err = r.Apply(rec)
			}
			if tc.err != "" {
				if err == nil || !errors.Is(err, schemas.ErrIncompatible) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrIncompatible containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Identity(); got == tc.changes {
				t.Errorf("Identity() = %v, want %v", got, !tc.changes)
			}
			if v, err := schemas.Float(rec, "amount"); err != nil || v != tc.amount {
				t.Errorf("amount = %v, %v; want %v", v, err, tc.amount)
			}
			if tc.fields != nil {
				return
			}
			if v, err := schemas.Int(rec, "items"); err != nil || v != tc.items {
				t.Errorf("items = %v, %v; want %v", v, err, tc.items)
			}
			if v, err := schemas.Int(rec, "ts"); err != nil || v != ts.UnixMilli() {
				t.Errorf("ts = %v, %v; want %v", v, err, ts.UnixMilli())
			}
			fee, err := schemas.Float(rec, "fee")
			switch {
			case tc.fee == nil && !errors.Is(err, schemas.ErrNullField):
				t.Errorf("fee = %v, %v; want null", fee, err)
			case tc.fee != nil && (err != nil || fee != tc.fee.(float64)):
				t.Errorf("fee = %v, %v; want %v", fee, err, tc.fee)
			}
		})
	}
}

// Promoted values take the reader's Go type, so a where typed against the
// reader (CEL double for a double field) sees a float64, not an int32.
func TestResolvePromotesToTheReadersGoType(t *testing.T) {
	reader := mustParse(t, readerText)
	writer := mustParse(t, record("Payment", `{"name":"user_id","type":"string"}`, `{"name":"amount","type":"int"}`, `{"name":"items","type":"int"}`, `{"name":"ts","type":"long"}`))
	r, err := schemas.Resolve(writer, reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := map[string]any{"user_id": "u", "amount": int32(4), "items": int32(9), "ts": int64(1)}
	if err := r.Apply(rec); err != nil {
		t.Fatal(err)
	}
	if _, ok := rec["amount"].(float64); !ok {
		t.Errorf("amount is %T, want float64", rec["amount"])
	}
	if _, ok := rec["items"].(int64); !ok {
		t.Errorf("items is %T, want int64", rec["items"])
	}
}

func TestConfluentWireFormat(t *testing.T) {
	s := mustParse(t, readerText)
	rec := map[string]any{"user_id": "u", "amount": 2.5, "items": int64(3), "fee": nil, "ts": int64(1000)}
	b, err := s.EncodeConfluent(nil, 0x01020304, rec)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0 || b[1] != 1 || b[2] != 2 || b[3] != 3 || b[4] != 4 {
		t.Fatalf("header % x, want 00 01 02 03 04", b[:5])
	}
	id, body, err := schemas.ConfluentID(b)
	if err != nil || id != 0x01020304 {
		t.Fatalf("ConfluentID = %d, %v", id, err)
	}
	got, err := s.DecodeBinary(body)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := schemas.Float(got, "amount"); v != 2.5 {
		t.Errorf("amount = %v", v)
	}
	for _, bad := range [][]byte{nil, {0, 1, 2}, {0xC3, 1, 0, 0, 0, 0}} {
		if _, _, err := schemas.ConfluentID(bad); !errors.Is(err, schemas.ErrNotConfluent) {
			t.Errorf("ConfluentID(% x) = %v, want ErrNotConfluent", bad, err)
		}
	}
	if _, err := s.DecodeBinary(append(body, 0)); !errors.Is(err, schemas.ErrMalformed) {
		t.Errorf("trailing byte: %v, want ErrMalformed", err)
	}
}
