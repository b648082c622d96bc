package config

import (
	"strings"
	"testing"
	"time"
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
