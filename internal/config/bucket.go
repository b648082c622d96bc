package config

import (
	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/schemas"
)

// checkBucket checks bucket and max_buckets (see Feature.Bucket): bucket
// names a string, long, int or boolean field of the source's schema (a
// nullable one too: null is the bucket "__null__"); max_buckets is a whole
// number from 1 to aggregations.BucketsMax, only with bucket, default
// aggregations.DefaultMaxBuckets. A derived feature takes neither, nor a
// default (the value is a map; of lists for first_k, last_k, top_k). It sets
// ft.Bucket, ft.BucketType and ft.MaxBuckets when valid.
func (d *decoder) checkBucket(it featureItem, src *Source) {
	ft, m := it.f, it.m
	if it.bucket == "" {
		if it.maxBucketsSet {
			d.addf(m.lineOf("max_buckets"), m.field("max_buckets"), "applies only to a bucketed feature: add bucket: FIELD, or remove max_buckets")
		}
		return
	}
	if it.expression != "" {
		d.addf(m.lineOf("bucket"), m.field("bucket"), "a derived feature cannot be bucketed; bucket the features it reads instead, or remove bucket")
		return
	}
	if m.get("default") != nil {
		d.addf(m.lineOf("default"), m.field("default"), "a bucketed feature's value is a map: an empty window gives an empty map (count, sum, approx_distinct) or null, and a number default does not apply; remove default")
		return
	}
	maxBuckets := aggregations.DefaultMaxBuckets
	switch {
	case !it.maxBucketsSet:
	case !it.maxBucketsOK: // a non-integer (reported)
		return
	case it.maxBuckets < 1 || it.maxBuckets > aggregations.BucketsMax:
		d.addf(m.lineOf("max_buckets"), m.field("max_buckets"), "%d is out of range: keep from 1 to %d buckets (default %d; the others fold into %q)", it.maxBuckets, aggregations.BucketsMax, aggregations.DefaultMaxBuckets, aggregations.OtherBucket)
		return
	default:
		maxBuckets = int(it.maxBuckets)
	}
	if src == nil || src.Schema == nil {
		return // reported at the source reference or the schema
	}
	fld, ok := src.Schema.Field(it.bucket)
	if !ok {
		d.addf(m.lineOf("bucket"), m.field("bucket"), "field %q is not in schema %s of source %q; fields a feature can be bucketed by (string, int, long or boolean): %s", it.bucket, src.Schema.Name, src.Name, fieldNames(src.Schema, isBucketable))
		return
	}
	vt, typed := valueType(fld)
	if !typed || vt == aggregations.TypeDouble {
		d.addf(m.lineOf("bucket"), m.field("bucket"), "field %q is %s; a bucket field must be a string, int, long or boolean (a double has no exact buckets); fields a feature can be bucketed by: %s", it.bucket, typeName(fld), fieldNames(src.Schema, isBucketable))
		return
	}
	ft.Bucket, ft.BucketType, ft.MaxBuckets = it.bucket, vt, maxBuckets
}

// isBucketable reports whether a field can be a feature's bucket.
func isBucketable(f schemas.Field) bool {
	vt, ok := valueType(f)
	return ok && vt != aggregations.TypeDouble
}
