package config

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/schemas"
)

// whereFilter compiles where on the demo transactions schema.
func whereFilter(t testing.TB, where string) *Filter {
	t.Helper()
	f := mustParse(t, header+"features:\n"+validFeature+"    where: '"+where+"'\n").Features[0]
	if f.Filter == nil {
		t.Fatalf("where %q: no Filter", where)
	}
	return f.Filter
}

// transaction is a demo transaction as goavro decodes it (ts a time.Time).
func transaction(amount float64, currency string, ts time.Time) map[string]any {
	return map[string]any{"user_id": "u1", "merchant_id": "m1", "amount": amount, "currency": currency, "ts": ts}
}

func TestFilterMatch(t *testing.T) {
	ts := time.UnixMilli(1_700_000_000_000).UTC()
	tests := []struct {
		where   string
		rec     map[string]any
		want    bool
		wantErr string
	}{
		{"amount > 100.0 && currency != \"JPY\"", transaction(150, "EUR", ts), true, ""},
		{"amount > 100.0 && currency != \"JPY\"", transaction(150, "JPY", ts), false, ""},
		{"amount > 100.0 && currency != \"JPY\"", transaction(100, "EUR", ts), false, ""},
		{"currency in [\"EUR\", \"USD\"] || amount < 0.0", transaction(-1, "GBP", ts), true, ""},
		{"currency.startsWith(\"E\")", transaction(1, "EUR", ts), true, ""},
		// A timestamp-millis field reads as epoch milliseconds.
		{"ts == 1700000000000", transaction(1, "EUR", ts), true, ""},
		{"ts > 1700000000000", transaction(1, "EUR", ts), false, ""},
		// Errors: evaluation fails, it does not guess.
		{"int(amount) > 0", transaction(1e300, "EUR", ts), false, "integer overflow"},
		{"amount > 1.0", map[string]any{"currency": "EUR"}, false, "no such attribute"},
		{"amount > 1.0", map[string]any{"amount": "12"}, false, "no such overload"},
	}
	var in FilterInput
	for _, tt := range tests {
		f := whereFilter(t, tt.where)
		in.Rec = tt.rec
		got, err := f.Match(&in)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.where) {
				t.Errorf("where %s on %v: got %v, %v; want an error naming the where and %q", tt.where, tt.rec, got, err, tt.wantErr)
			}
		case err != nil || got != tt.want:
			t.Errorf("where %s on %v: got %v, %v; want %v", tt.where, tt.rec, got, err, tt.want)
		}
	}
}

// BenchmarkFilterMatch measures one evaluation of a where on a decoded record
// with a reused FilterInput: the allocations CEL makes per evaluation.
func BenchmarkFilterMatch(b *testing.B) {
	for _, where := range []string{"amount > 100.0", "amount > 100.0 && currency != \"JPY\"", "currency == \"EUR\""} {
		b.Run(where, func(b *testing.B) {
			f := whereFilter(b, where)
			in := FilterInput{Rec: transaction(150, "EUR", time.UnixMilli(1_700_000_000_000))}
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := f.Match(&in); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// TestFilterTotal: Total holds for the wheres built only of fields,
// literals, comparisons, logical operators and in over a list literal, and
// for no where that does arithmetic, converts or calls a function.
func TestFilterTotal(t *testing.T) {
	for where, want := range map[string]bool{
		`amount > 100.0 && currency != "JPY"`:         true,
		`currency in ["EUR", "USD"] || !(ts < 5)`:     true,
		`amount == 3.0 ? currency == "EUR" : ts >= 0`: true,
		`user_id == merchant_id`:                      true,
		`int(amount) > 0`:                             false,
		`ts % 2 == 0`:                                 false,
		`amount + 1.0 > 2.0`:                          false,
		`currency.startsWith("E")`:                    false,
		`size(currency) == 3`:                         false,
		`currency in {"EUR": 1}`:                      false,
		`[1, 2].all(x, x > 0)`:                        false,
	} {
		if got := whereFilter(t, where).Total; got != want {
			t.Errorf("where %s: Total %v, want %v", where, got, want)
		}
	}
}

// TestProjectedInputMatchesFilterInput: a where evaluated over a projected
// record (ProjectedInput) gives what it gives over the native record goavro
// decodes (FilterInput): the same outcome and the same error, for strings
// beyond the interned ones too; a Total where never fails.
func TestProjectedInputMatchesFilterInput(t *testing.T) {
	wheres := []string{
		`amount > 100.0 && currency != "JPY"`,
		`int(amount) % 3 == 0`,
		`ts % 2 == 0 || merchant_id.startsWith("m1")`,
		`currency + user_id == "EURu1"`,
		`size(merchant_id) > 3 && 10 / (ts % 5) > 2`,
		`currency in ["EUR", "USD"] || !(ts < 5)`,
		`amount == 3.0 ? currency == "EUR" : ts >= 0`,
	}
	var fs []*Filter
	for _, w := range wheres {
		fs = append(fs, whereFilter(t, w))
	}
	schema := mustParse(t, header+"features:\n"+validFeature).Features[0].SourceRef.Schema
	fields := []string{"user_id", "merchant_id", "amount", "currency", "ts"}
	targets := []schemas.Target{schemas.AsString, schemas.AsString, schemas.AsFloat, schemas.AsString, schemas.AsInt}
	proj, ok := schema.Project(fields, targets)
	if !ok {
		t.Fatal("no projection of the transaction schema")
	}
	var vars []ProjectedVar
	for i, name := range fields {
		f, _ := schema.Field(name)
		if tt, ok := ProjectedTarget(f); !ok || tt != targets[i] {
			t.Fatalf("field %s: ProjectedTarget %v %v, want %v", name, tt, ok, targets[i])
		}
		vars = append(vars, ProjectedVar{Name: name, Slot: i, Target: targets[i]})
	}
	rng := rand.New(rand.NewPCG(5, 6))
	amounts := []float64{150, 100, 99.5, -3, 0, 1e300, math.NaN(), math.Inf(1), 300}
	var native FilterInput
	projected := ProjectedInput{Vars: vars, Schema: schema, Vals: make([]schemas.Projected, proj.Slots())}
	matched, failed := 0, 0
	for i := range 3000 {
		rec := map[string]any{"user_id": "u1", "merchant_id": fmt.Sprintf("m%d", rng.IntN(2000)), // beyond maxInterned
			"amount": amounts[rng.IntN(len(amounts))], "currency": []string{"EUR", "JPY", "USD", ""}[rng.IntN(4)], "ts": rng.Int64N(1e13) - 1e12}
		body, err := schema.Codec.BinaryFromNative(nil, rec)
		if err != nil {
			t.Fatal(err)
		}
		if !proj.Decode(body, projected.Vals) {
			t.Fatalf("record %d: not projected", i)
		}
		if native.Rec, err = schema.DecodeBinary(body); err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			want, wantErr := f.Match(&native)
			got, gotErr := f.Match(&projected)
			if got != want || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || projected.Missed {
				t.Fatalf("record %d %v, where %s: projected %v %v (missed %v), native %v %v", i, rec, f.Expr, got, gotErr, projected.Missed, want, wantErr)
			}
			if wantErr != nil && f.Total {
				t.Fatalf("record %d %v: where %s is Total but failed: %v", i, rec, f.Expr, wantErr)
			}
			if wantErr != nil {
				failed++
			} else if want {
				matched++
			}
		}
	}
	if matched == 0 || failed == 0 {
		t.Fatalf("%d matched, %d failed: the records do not exercise both", matched, failed)
	}
	// A field of the schema the Vars lack is unresolved and reported.
	in := ProjectedInput{Vars: vars[:1], Schema: schema, Vals: projected.Vals}
	if _, err := whereFilter(t, `amount > 1.0`).Match(&in); err == nil || !in.Missed {
		t.Fatalf("a field missing from Vars: %v, Missed %v", err, in.Missed)
	}
}
