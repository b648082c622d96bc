package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
)

// TestBucketSettings: bucket names a string, long or boolean field, sets
// the window's buckets and max_buckets (default 100), and both are in the
// definition hash only when set.
func TestBucketSettings(t *testing.T) {
	plain := mustParse(t, header+"features:\n"+validFeature).Features[0]
	for _, tt := range []struct {
		source, bucket, extra string
		wantType              aggregations.ValueType
		wantMax               int
	}{
		{"transactions", "currency", "", aggregations.TypeString, aggregations.DefaultMaxBuckets},
		{"transactions", "merchant_id", "    max_buckets: 7\n", aggregations.TypeString, 7},
		{"transactions", "ts", "    max_buckets: 1000\n", aggregations.TypeLong, 1000},
		{"logins", "success", "", aggregations.TypeBool, aggregations.DefaultMaxBuckets},
	} {
		doc := header + "features:\n" + strings.Replace(validFeature, "source: transactions", "source: "+tt.source, 1) + "    bucket: " + tt.bucket + "\n" + tt.extra
		if tt.source == "logins" {
			doc = strings.Replace(doc, "field: amount", "field: ts", 1)
		}
		f := mustParse(t, doc).Features[0]
		if f.Bucket != tt.bucket || f.BucketType != tt.wantType || f.MaxBuckets != tt.wantMax || !f.Window.Buckets() {
			t.Errorf("bucket %s: got %q %v max %d window buckets %v", tt.bucket, f.Bucket, f.BucketType, f.MaxBuckets, f.Window.Buckets())
		}
		if f.Hash == plain.Hash {
			t.Errorf("bucket %s: hash equals the unbucketed feature's", tt.bucket)
		}
	}
	if plain.Bucket != "" || plain.MaxBuckets != 0 || plain.Window.Buckets() {
		t.Errorf("unbucketed: %q %d %v", plain.Bucket, plain.MaxBuckets, plain.Window.Buckets())
	}
	for _, kv := range plain.Definition() {
		if strings.Contains(kv[0], "bucket") {
			t.Errorf("unbucketed definition has %v", kv)
		}
	}
	h := func(extra string) string {
		return mustParse(t, header+"features:\n"+validFeature+"    bucket: currency\n"+extra).Features[0].Hash
	}
	if h("") != h("    max_buckets: 100\n") || h("") == h("    max_buckets: 99\n") {
		t.Error("max_buckets: the default must hash as 100, and another value differently")
	}
}

// TestBucketErrors: each wrong bucket setting is one problem on its line,
// naming the field and what to do.
func TestBucketErrors(t *testing.T) {
	for _, tt := range []struct {
		name, extra, field, msg string
		line                    int // of the feature's lines after header + "features:\n"
	}{
		{"unknown field", "    bucket: category\n", "features[0].bucket", `field "category" is not in schema featurepipe.demo.Transaction of source "transactions"; fields a feature can be bucketed by (string, int, long or boolean): user_id, merchant_id, currency, ts`, 10},
		{"double field", "    bucket: amount\n", "features[0].bucket", `field "amount" is of type double; a bucket field must be a string, int, long or boolean`, 10},
		{"max_buckets too large", "    bucket: currency\n    max_buckets: 1001\n", "features[0].max_buckets", "1001 is out of range: keep from 1 to 1000 buckets", 11},
		{"max_buckets zero", "    bucket: currency\n    max_buckets: 0\n", "features[0].max_buckets", "0 is out of range", 11},
		{"default", "    bucket: currency\n    default: 0\n", "features[0].default", "a bucketed feature's value is a map", 11},
		{"max_buckets without bucket", "    max_buckets: 5\n", "features[0].max_buckets", "applies only to a bucketed feature: add bucket: FIELD", 10},
	} {
		doc := header + "features:\n" + validFeature + tt.extra
		_, err := Parse("features.yaml", []byte(doc), schemaFS(t), ".")
		var list Errors
		var e *Error
		if errors.As(err, &list) || !errors.As(err, &e) {
			t.Errorf("%s: %v; want one problem", tt.name, err)
			continue
		}
		wantLine := strings.Count(header, "\n") + 1 + tt.line
		if e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) || e.Line != wantLine {
			t.Errorf("%s: %s:%d %s: %s; want line %d field %s containing %q", tt.name, e.File, e.Line, e.Field, e.Msg, wantLine, tt.field, tt.msg)
		}
	}
}

// TestBucketedLists: first_k, last_k (of a number or a string field) and
// top_k take bucket like the scalar kinds: the window keeps k, its strings
// and its buckets, and the definition hash differs from the unbucketed one.
func TestBucketedLists(t *testing.T) {
	for _, tt := range []struct {
		agg, field string
		strings    bool
	}{
		{"first_k", "amount", false},
		{"last_k", "amount", false},
		{"last_k", "merchant_id", true},
		{"top_k", "merchant_id", true},
		{"top_k", "amount", false},
	} {
		feature := strings.Replace(strings.Replace(validFeature, "aggregation: avg", "aggregation: "+tt.agg, 1), "field: amount", "field: "+tt.field, 1) + "    k: 3\n"
		plain := mustParse(t, header+"features:\n"+feature).Features[0]
		f := mustParse(t, header+"features:\n"+feature+"    bucket: currency\n    max_buckets: 4\n").Features[0]
		what := tt.agg + " of " + tt.field
		if f.Bucket != "currency" || f.MaxBuckets != 4 || !f.Window.Buckets() || f.Window.K() != 3 || f.K != 3 || f.Window.Strings() != tt.strings {
			t.Errorf("%s: bucket %q max %d window %+v (buckets %v, k %d, strings %v), k %d", what, f.Bucket, f.MaxBuckets, f.Window, f.Window.Buckets(), f.Window.K(), f.Window.Strings(), f.K)
		}
		if f.Hash == plain.Hash {
			t.Errorf("%s: the bucketed hash equals the unbucketed one", what)
		}
	}
	// k keeps its bounds with a bucket: one problem, on k's line.
	for agg, msg := range map[string]string{"last_k": "1001 is out of range: keep from 1 to 1000 events", "top_k": "1001 is out of range: give from 1 to 1000 values"} {
		feature := strings.Replace(validFeature, "aggregation: avg", "aggregation: "+agg, 1) + "    bucket: currency\n    k: 1001\n"
		_, err := Parse("features.yaml", []byte(header+"features:\n"+feature), schemaFS(t), ".")
		var list Errors
		var e *Error
		wantLine := strings.Count(header, "\n") + 1 + 11
		if errors.As(err, &list) || !errors.As(err, &e) || e.Field != "features[0].k" || e.Line != wantLine || !strings.Contains(e.Msg, msg) {
			t.Errorf("bucketed %s with k 1001: %v; want one problem at line %d features[0].k: %s", agg, err, wantLine, msg)
		}
	}
}

// TestBucketedFeatureIsNoDerivedInput: a derived feature reads numbers, so
// a bucketed input (a map) is refused at its expression.
func TestBucketedFeatureIsNoDerivedInput(t *testing.T) {
	doc := header + "features:\n" + validFeature + "    bucket: currency\n" +
		"  - {name: twice, version: 1, entity: user, expression: \"base * 2.0\", owner: o, description: d}\n"
	_, err := Parse("features.yaml", []byte(doc), schemaFS(t), ".")
	if err == nil || !strings.Contains(err.Error(), "is bucketed by currency (a map of buckets): a derived feature reads numbers only") {
		t.Errorf("derived over a bucketed feature: %v", err)
	}
}
