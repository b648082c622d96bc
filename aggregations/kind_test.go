package aggregations_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
)

func TestParseKind(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want aggregations.Kind
	}{
		{"count parses", "count", aggregations.Count},
		{"sum parses", "sum", aggregations.Sum},
		{"avg parses", "avg", aggregations.Avg},
		{"min parses", "min", aggregations.Min},
		{"max parses", "max", aggregations.Max},
		{"last parses", "last", aggregations.Last},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := aggregations.ParseKind(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("ParseKind(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
	for _, tc := range []struct{ name, in string }{
		{"names are case-sensitive", "Count"},
		{"empty name is rejected", ""},
		{"unsupported aggregation is rejected", "median"},
		{"surrounding spaces are rejected", " sum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := aggregations.ParseKind(tc.in)
			if !errors.Is(err, aggregations.ErrUnknownKind) {
				t.Fatalf("ParseKind(%q) error = %v, want ErrUnknownKind", tc.in, err)
			}
			for _, name := range []string{"count", "sum", "avg", "min", "max", "last"} {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("error %q does not list allowed name %q", err, name)
				}
			}
		})
	}
}

func TestKinds(t *testing.T) {
	want := []aggregations.Kind{aggregations.Count, aggregations.Sum, aggregations.Avg, aggregations.Min, aggregations.Max, aggregations.Last}
	if got := aggregations.Kinds(); !slices.Equal(got, want) {
		t.Fatalf("Kinds() = %v, want %v", got, want)
	}
	if got := aggregations.KindNames(); !slices.Equal(got, []string{"count", "sum", "avg", "min", "max", "last"}) {
		t.Fatalf("KindNames() = %v", got)
	}
	if got := aggregations.Kind(0).String(); got != "Kind(0)" {
		t.Errorf("invalid kind String() = %q, want Kind(0)", got)
	}
	if aggregations.Kind(0).Valid() || aggregations.Kind(7).Valid() || !aggregations.Last.Valid() {
		t.Error("Valid() accepts only the declared kinds")
	}
}

func TestKindProperties(t *testing.T) {
	for _, tc := range []struct {
		kind                    aggregations.Kind
		needsField, emptyIsZero bool
	}{
		{aggregations.Count, false, true},
		{aggregations.Sum, true, true},
		{aggregations.Avg, true, false},
		{aggregations.Min, true, false},
		{aggregations.Max, true, false},
		{aggregations.Last, true, false},
	} {
		if got := tc.kind.NeedsField(); got != tc.needsField {
			t.Errorf("%v.NeedsField() = %v, want %v", tc.kind, got, tc.needsField)
		}
		if got := tc.kind.EmptyIsZero(); got != tc.emptyIsZero {
			t.Errorf("%v.EmptyIsZero() = %v, want %v", tc.kind, got, tc.emptyIsZero)
		}
	}
}
