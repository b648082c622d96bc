package skew

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes r as the human-readable report of `featurepipe skew`: a
// summary line, one table row per feature and the examples of the features
// with mismatches.
func (r *Report) WriteText(w io.Writer) error {
	from := "from the start"
	if r.Since != nil {
		from = "since " + r.Since.Format(time.RFC3339Nano)
	}
	fmt.Fprintf(w, "skew: %d lookup-log entries of %s (%s, %d undecodable), point-in-time %s, %d source records replayed in %s\n",
		r.Entries, r.Topic, from, r.Invalid, r.Mode, r.Records, time.Duration(r.DurationMS)*time.Millisecond)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "feature\trows\tmismatches\tnull vs value\tmax abs diff\tmax rel diff\t")
	for _, f := range r.Features {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t\n", f.Feature, f.Rows, f.Mismatches, f.NullMismatches,
			num(f.MaxAbsDiff), num(f.MaxRelDiff))
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t\t\t\t\n", r.Compared, r.Mismatches)
	if err := tw.Flush(); err != nil {
		return err
	}
	for id, n := range r.Unknown {
		fmt.Fprintf(w, "skipped %d served values of %s: not in the feature file\n", n, id)
	}
	for _, f := range r.Features {
		if len(f.Examples) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s: first %d of %d mismatches (key, at, served, recomputed)\n", f.Feature, len(f.Examples), f.Mismatches)
		for _, e := range f.Examples {
			served, recomputed := ptr(e.Served), ptr(e.Recomputed)
			switch {
			case f.Top:
				served, recomputed = topText(e.ServedTop), topText(e.RecomputedTop)
			case f.String && f.List:
				served, recomputed = quotedList(e.ServedStrings), quotedList(e.RecomputedStrings)
			case f.String:
				served, recomputed = quoted(e.ServedString), quoted(e.RecomputedString)
			case f.List:
				served, recomputed = list(e.ServedList), list(e.RecomputedList)
			}
			switch {
			case f.Buckets && f.Top:
				served, recomputed = bucketListText(e.ServedBucketTops, topText), bucketListText(e.RecomputedBucketTops, topText)
			case f.Buckets && f.List && f.String:
				served, recomputed = bucketListText(e.ServedBucketStringLists, quotedList), bucketListText(e.RecomputedBucketStringLists, quotedList)
			case f.Buckets && f.List:
				served, recomputed = bucketListText(e.ServedBucketLists, list), bucketListText(e.RecomputedBucketLists, list)
			case f.Buckets && f.String:
				served, recomputed = bucketText(e.ServedBucketStrings, quoted), bucketText(e.RecomputedBucketStrings, quoted)
			case f.Buckets:
				served, recomputed = bucketText(e.ServedBuckets, ptr), bucketText(e.RecomputedBuckets, ptr)
			}
			fmt.Fprintf(w, "  %s\t%s (%d)\t%s\t%s\n", e.Key, time.UnixMilli(e.At).UTC().Format("2006-01-02T15:04:05.000Z"), e.At,
				served, recomputed)
		}
	}
	if r.Mismatches == 0 {
		_, err := fmt.Fprintf(w, "\nno skew: all %d served values reproduced\n", r.Compared)
		return err
	}
	_, err := fmt.Fprintf(w, "\nSKEW: %d of %d served values differ\n", r.Mismatches, r.Compared)
	return err
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

func ptr(f *float64) string {
	if f == nil {
		return "null"
	}
	return strconv.FormatFloat(*f, 'g', -1, 64)
}

// list formats a list feature's value as JSON-like text, whole numbers
// (longs, booleans as 0 and 1) in full; nil is null.
func list(l []float64) string {
	if l == nil {
		return "null"
	}
	parts := make([]string, len(l))
	for i, x := range l {
		format := byte('g')
		if x == math.Trunc(x) && math.Abs(x) < 1e18 {
			format = 'f'
		}
		parts[i] = strconv.FormatFloat(x, format, -1, 64)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// quoted formats a string feature's value as a Go-quoted string (control
// characters and invalid UTF-8 escaped); nil is null.
func quoted(s *string) string {
	if s == nil {
		return "null"
	}
	return strconv.Quote(*s)
}

// quotedList formats a string list feature's value as [ "a", "b" ]; nil
// is null.
func quotedList(l []string) string {
	if l == nil {
		return "null"
	}
	parts := make([]string, len(l))
	for i, x := range l {
		parts[i] = strconv.Quote(x)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// topText is a top_k value's JSON text; nil is null.
func topText(b json.RawMessage) string {
	if b == nil {
		return "null"
	}
	return string(b)
}

// bucketListText formats a bucketed list feature's map (of lists, or of
// top_k texts) as {key: value, ...} in key order, each value formatted by
// value (list, quotedList, topText); nil is null.
func bucketListText[V any](m map[string]V, value func(V) string) string {
	if m == nil {
		return "null"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, strconv.Quote(k)+": "+value(m[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// bucketText formats a bucketed feature's map as {key: value, ...} in key
// order, each value formatted by value (ptr for numbers, quoted for
// strings); nil is null.
func bucketText[V any](m map[string]*V, value func(*V) string) string {
	if m == nil {
		return "null"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, strconv.Quote(k)+": "+value(m[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
