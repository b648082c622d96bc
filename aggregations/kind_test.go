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
		{"variance parses", "variance", aggregations.Variance},
		{"stddev parses", "stddev", aggregations.Stddev},
		{"variance_samp parses", "variance_samp", aggregations.VarianceSamp},
		{"stddev_samp parses", "stddev_samp", aggregations.StddevSamp},
		{"first parses", "first", aggregations.First},
		{"approx_distinct parses", "approx_distinct", aggregations.ApproxDistinct},
		{"approx_percentile parses", "approx_percentile", aggregations.ApproxPercentile},
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
			for _, name := range []string{"count", "sum", "avg", "min", "max", "last", "stddev_samp", "approx_percentile"} {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("error %q does not list allowed name %q", err, name)
				}
			}
		})
	}
}

func TestKinds(t *testing.T) {
	want := []aggregations.Kind{aggregations.Count, aggregations.Sum, aggregations.Avg, aggregations.Min, aggregations.Max, aggregations.Last,
		aggregations.Variance, aggregations.Stddev, aggregations.VarianceSamp, aggregations.StddevSamp, aggregations.First,
		aggregations.ApproxDistinct, aggregations.ApproxPercentile, aggregations.FirstK, aggregations.LastK, aggregations.TopK}
	if got := aggregations.Kinds(); !slices.Equal(got, want) {
		t.Fatalf("Kinds() = %v, want %v", got, want)
	}
	if got := aggregations.KindNames(); !slices.Equal(got, []string{"count", "sum", "avg", "min", "max", "last",
		"variance", "stddev", "variance_samp", "stddev_samp", "first", "approx_distinct", "approx_percentile", "first_k", "last_k", "top_k"}) {
		t.Fatalf("KindNames() = %v", got)
	}
	if got := aggregations.Kind(0).String(); got != "Kind(0)" {
		t.Errorf("invalid kind String() = %q, want Kind(0)", got)
	}
	if aggregations.Kind(0).Valid() || aggregations.Kind(17).Valid() || !aggregations.TopK.Valid() || !aggregations.LastK.Valid() || !aggregations.Last.Valid() || !aggregations.ApproxPercentile.Valid() {
		t.Error("Valid() accepts only the declared kinds")
	}
}

func TestKindProperties(t *testing.T) {
	for _, tc := range []struct {
		kind                                             aggregations.Kind
		needsField, emptyIsZero, percentile, approximate bool
	}{
		{aggregations.Count, false, true, false, false},
		{aggregations.Sum, true, true, false, false},
		{aggregations.Avg, true, false, false, false},
		{aggregations.Min, true, false, false, false},
		{aggregations.Max, true, false, false, false},
		{aggregations.Last, true, false, false, false},
		{aggregations.Variance, true, false, false, false},
		{aggregations.Stddev, true, false, false, false},
		{aggregations.VarianceSamp, true, false, false, false},
		{aggregations.StddevSamp, true, false, false, false},
		{aggregations.First, true, false, false, false},
		{aggregations.ApproxDistinct, true, true, false, true},
		{aggregations.ApproxPercentile, true, false, true, true},
		{aggregations.FirstK, true, false, false, false},
		{aggregations.LastK, true, false, false, false},
		{aggregations.TopK, true, false, false, true},
	} {
		if got := tc.kind.List(); got != (tc.kind == aggregations.FirstK || tc.kind == aggregations.LastK) {
			t.Errorf("%v.List() = %v", tc.kind, got)
		}
		if got := tc.kind.NeedsK(); got != (tc.kind.List() || tc.kind == aggregations.TopK) {
			t.Errorf("%v.NeedsK() = %v", tc.kind, got)
		}
		if got := tc.kind.NeedsPercentile(); got != tc.percentile {
			t.Errorf("%v.NeedsPercentile() = %v, want %v", tc.kind, got, tc.percentile)
		}
		if got := tc.kind.Approximate(); got != tc.approximate {
			t.Errorf("%v.Approximate() = %v, want %v", tc.kind, got, tc.approximate)
		}
		if got := tc.kind.NeedsField(); got != tc.needsField {
			t.Errorf("%v.NeedsField() = %v, want %v", tc.kind, got, tc.needsField)
		}
		if got := tc.kind.EmptyIsZero(); got != tc.emptyIsZero {
			t.Errorf("%v.EmptyIsZero() = %v, want %v", tc.kind, got, tc.emptyIsZero)
		}
	}
}
