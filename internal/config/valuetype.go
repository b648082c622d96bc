package config

import "github.com/featurepipe/featurepipe/aggregations"

// OutputType is the type of the feature's value (of each element of a
// list): the field's type for last, first, first_k and last_k of a long,
// boolean or string field, TypeDouble otherwise (count, sums, estimates, derived
// features). Every output encoder (lookup JSON, backfill Parquet and CSV,
// Feast) writes the value by it. See aggregations.Kind.Output.
func (f *Feature) OutputType() aggregations.ValueType {
	if f.Derived != nil {
		return aggregations.TypeDouble
	}
	return f.Aggregation.Output(f.ValueType)
}
