package skew

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// DefaultExamples is the number of mismatching examples kept per feature
// when Options.Examples is 0.
const DefaultExamples = 5

// DefaultTolerance is the relative tolerance used when Options.Tolerance is 0.
const DefaultTolerance = 1e-9

var (
	// ErrInvalidOptions is wrapped by the errors of Run for unusable Options.
	ErrInvalidOptions = errors.New("skew: invalid options")
	// ErrMismatch is wrapped by Report.Err when any served value differs
	// from its recomputation.
	ErrMismatch = errors.New("skew: served values differ from the backfill")
)

// Options configure Run. Brokers and Config are required.
type Options struct {
	// Brokers are the Kafka bootstrap brokers of the lookup log and the
	// source topics; the clients connect with Config.Kafka.Security.
	Brokers []string
	// Config is the validated feature file: the same one the workers and
	// the lookup service run with.
	Config *config.File
	// Topic is the lookup-log topic. Default Config.Kafka.LookupLogTopic.
	Topic string
	// Since skips lookup-log records with a Kafka timestamp before it (found
	// with offsets-for-timestamp). Default zero: from the log start.
	Since time.Time
	// Mode is the backfill's point-in-time rule. Default backfill.ModeEvent.
	Mode backfill.Mode
	// Examples is how many mismatching rows to keep per feature. Default
	// DefaultExamples; negative keeps none.
	Examples int
	// Tolerance is the relative difference below which two numbers match:
	// |served - recomputed| <= Tolerance * max(|served|, |recomputed|).
	// Default DefaultTolerance; it must not be negative.
	Tolerance float64
	// Keep, when set, selects the entries to compare (e.g. some keys, a time
	// range, the lookups of one client); the others are read but neither
	// recomputed nor counted in Entries. Default nil: every entry.
	Keep func(*lookuplog.Entry) bool
	// Limits are the event validation limits of the workers. Default: the
	// events package defaults.
	Limits events.Limits
	// Progress receives the backfill's replay progress. Default nil: none.
	Progress io.Writer
	// Log receives the Kafka clients' warnings. Default: no logging.
	Log *zap.Logger
	// ExtraOpts are appended to the Kafka client options (tests).
	ExtraOpts []kgo.Opt
}

func (o *Options) validate() error {
	var problems []string
	if len(o.Brokers) == 0 {
		problems = append(problems, "no brokers")
	}
	if o.Config == nil {
		problems = append(problems, "no feature file (Config)")
	}
	m, err := backfill.ParseMode(string(o.Mode))
	if err != nil {
		problems = append(problems, err.Error())
	}
	o.Mode = m
	if o.Tolerance < 0 || math.IsNaN(o.Tolerance) {
		problems = append(problems, fmt.Sprintf("tolerance %v is negative", o.Tolerance))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, strings.Join(problems, "; "))
	}
	if o.Topic == "" {
		o.Topic = o.Config.Kafka.LookupLogTopic
	}
	if o.Examples == 0 {
		o.Examples = DefaultExamples
	}
	if o.Tolerance == 0 {
		o.Tolerance = DefaultTolerance
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return nil
}

// Report is the result of Run; it encodes as the JSON of `featurepipe skew
// --json`.
type Report struct {
	Topic string                 `json:"topic"`
	Since *time.Time             `json:"since,omitempty"`
	Mode  backfill.Mode          `json:"point_in_time"`
	Log   []backfill.OffsetRange `json:"lookup_log"` // offsets read
	// Entries are the lookup-log entries read; Invalid the entries (lines of
	// a record) that did not decode (skipped).
	Entries int64 `json:"entries"`
	Invalid int64 `json:"invalid"`
	// Unknown counts served values of feature ids the feature file does not
	// define (skipped), by id.
	Unknown map[string]int64 `json:"unknown_features,omitempty"`
	// Compared and Mismatches sum the per-feature counts.
	Compared   int64 `json:"compared"`
	Mismatches int64 `json:"mismatches"`
	// Features are sorted by feature id.
	Features []*FeatureReport `json:"features"`
	// Records counts the source records the backfill replayed.
	Records int64 `json:"source_records"`
	// DurationMS is how long Run took.
	DurationMS int64 `json:"duration_ms"`
}

// FeatureReport is the comparison of one feature.
type FeatureReport struct {
	Feature string `json:"feature"` // id, name@version
	// List tells that the feature's values are lists (first_k, last_k):
	// its examples carry ServedList and RecomputedList.
	List bool `json:"list,omitempty"`
	// String tells that the feature's values are strings (last, first,
	// first_k, last_k of a string field), compared exactly: its examples
	// carry ServedString and RecomputedString, or for a list ServedStrings
	// and RecomputedStrings.
	String bool `json:"string,omitempty"`
	// Top tells that the feature is a top_k: its examples carry ServedTop
	// and RecomputedTop (see compareTop for the rule).
	Top bool `json:"top,omitempty"`
	// Buckets tells that the feature's values are maps (a bucketed
	// feature): its examples carry ServedBuckets and RecomputedBuckets, or,
	// with String (a bucketed last or first of a string field, compared
	// exactly), ServedBucketStrings and RecomputedBucketStrings; with List
	// (a bucketed first_k, last_k) ServedBucketLists and
	// RecomputedBucketLists, or with String too ServedBucketStringLists and
	// RecomputedBucketStringLists; with Top (a bucketed top_k)
	// ServedBucketTops and RecomputedBucketTops.
	Buckets    bool  `json:"buckets,omitempty"`
	Rows       int64 `json:"rows"`
	Mismatches int64 `json:"mismatches"`
	// NullMismatches are the mismatches where one side is null.
	NullMismatches int64 `json:"null_mismatches"`
	// MaxAbsDiff and MaxRelDiff are over rows where both sides are numbers
	// (a list feature: over the elements at the same position of two
	// non-null lists); the relative difference is |a-b| / max(|a|, |b|).
	MaxAbsDiff float64   `json:"max_abs_diff"`
	MaxRelDiff float64   `json:"max_rel_diff"`
	Examples   []Example `json:"examples"`
}

// Example is one mismatching row; nil is null. A list feature's example
// (FeatureReport.List) has Served and Recomputed null and the lists in
// ServedList and RecomputedList, absent when null (longs and booleans as
// their float64 values, true as 1).
type Example struct {
	Key            string    `json:"key"`
	At             int64     `json:"at"` // epoch ms
	Served         *float64  `json:"served"`
	Recomputed     *float64  `json:"recomputed"`
	ServedList     []float64 `json:"served_list,omitempty"`
	RecomputedList []float64 `json:"recomputed_list,omitempty"`
	// The values of a string feature (FeatureReport.String), absent when
	// null.
	ServedString      *string  `json:"served_string,omitempty"`
	RecomputedString  *string  `json:"recomputed_string,omitempty"`
	ServedStrings     []string `json:"served_strings,omitempty"`
	RecomputedStrings []string `json:"recomputed_strings,omitempty"`
	// The values of a top_k feature (FeatureReport.Top), as the lookup
	// API's JSON text, absent when null.
	ServedTop     json.RawMessage `json:"served_top,omitempty"`
	RecomputedTop json.RawMessage `json:"recomputed_top,omitempty"`
	// ServedBuckets and RecomputedBuckets are a bucketed feature's maps,
	// absent when null.
	ServedBuckets     map[string]*float64 `json:"served_buckets,omitempty"`
	RecomputedBuckets map[string]*float64 `json:"recomputed_buckets,omitempty"`
	// ServedBucketStrings and RecomputedBucketStrings are a bucketed string
	// feature's maps, absent when null.
	ServedBucketStrings     map[string]*string `json:"served_bucket_strings,omitempty"`
	RecomputedBucketStrings map[string]*string `json:"recomputed_bucket_strings,omitempty"`
	// The maps of a bucketed first_k or last_k (of numbers; of strings),
	// absent when null.
	ServedBucketLists           map[string][]float64 `json:"served_bucket_lists,omitempty"`
	RecomputedBucketLists       map[string][]float64 `json:"recomputed_bucket_lists,omitempty"`
	ServedBucketStringLists     map[string][]string  `json:"served_bucket_string_lists,omitempty"`
	RecomputedBucketStringLists map[string][]string  `json:"recomputed_bucket_string_lists,omitempty"`
	// The map of a bucketed top_k, each bucket's top_k as the lookup API's
	// JSON text (null for a bucket without one), absent when null.
	ServedBucketTops     map[string]json.RawMessage `json:"served_bucket_tops,omitempty"`
	RecomputedBucketTops map[string]json.RawMessage `json:"recomputed_bucket_tops,omitempty"`
}

// Err is nil when every compared value matched, else an error wrapping
// ErrMismatch with the count.
func (r *Report) Err() error {
	if r.Mismatches == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d of %d values (point-in-time %s)", ErrMismatch, r.Mismatches, r.Compared, r.Mode)
}

// Feature returns the report of feature id, or nil.
func (r *Report) Feature(id string) *FeatureReport {
	for _, f := range r.Features {
		if f.Feature == id {
			return f
		}
	}
	return nil
}

// Run reads the lookup log (see the package doc), recomputes every served
// value with the backfill engine and compares. A non-nil error means the
// comparison could not be made; mismatches are reported in the Report (see
// Report.Err), not as an error.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	began := time.Now()
	opts, err := kafka.BaseOpts(kafka.ConnOf(o.Brokers, o.Config), "featurepipe-skew", o.Log)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	opts = append(opts, o.ExtraOpts...)
	entries, ranges, invalid, err := readLog(ctx, opts, o.Topic, o.Since)
	if err != nil {
		return nil, err
	}
	if o.Keep != nil {
		entries = slices.DeleteFunc(entries, func(l logged) bool { return !o.Keep(l.entry) })
	}
	rep := &Report{Topic: o.Topic, Mode: o.Mode, Log: ranges, Entries: int64(len(entries)), Invalid: invalid,
		Unknown: map[string]int64{}, Features: []*FeatureReport{}}
	if !o.Since.IsZero() {
		s := o.Since.UTC()
		rep.Since = &s
	}
	// "First" examples are the earliest lookups.
	slices.SortFunc(entries, func(a, b logged) int {
		return cmp.Or(cmp.Compare(a.entry.At, b.entry.At), cmp.Compare(a.entry.Key, b.entry.Key),
			cmp.Compare(a.partition, b.partition), cmp.Compare(a.offset, b.offset), cmp.Compare(a.index, b.index))
	})

	// Group the served values by the entity of their feature: one Compute
	// per entity over the points that served any of its features.
	type entityWork struct {
		ids      map[string]bool // features of this entity that were served
		points   []backfill.Point
		served   []map[string]*float64             // per point: its entry's values (only this entity's features are looked up)
		lists    []map[string][]float64            // per point: its entry's lists (first_k, last_k)
		strs     []map[string]*string              // per point: its entry's strings (string last, first)
		strLists []map[string][]string             // per point: its entry's string lists (string first_k, last_k)
		tops     []map[string]*lookuplog.ServedTop // per point: its entry's top_k values
		bkts     []map[string]map[string]*float64  // per point: its entry's maps (bucketed features)
		bstrs    []map[string]map[string]*string   // per point: its entry's string maps (bucketed string features)
		blists   []servedBucketLists               // per point: its entry's maps of lists (bucketed first_k, last_k, top_k)
	}
	byID := make(map[string]*config.Feature, len(o.Config.Features))
	for _, f := range o.Config.Features {
		byID[f.ID] = f
	}
	work := map[string]*entityWork{}
	var entities []string
	var entryEnts []string // entities of the current entry (reused)
	note := func(id string) {
		f := byID[id]
		if f == nil {
			rep.Unknown[id]++
			return
		}
		ent := f.EntityRef.Name
		w := work[ent]
		if w == nil {
			w = &entityWork{ids: map[string]bool{}}
			work[ent] = w
			entities = append(entities, ent)
		}
		w.ids[id] = true
		if !slices.Contains(entryEnts, ent) {
			entryEnts = append(entryEnts, ent)
		}
	}
	for _, l := range entries {
		entryEnts = entryEnts[:0]
		for id := range l.entry.Features {
			note(id)
		}
		for id := range l.entry.Lists {
			note(id)
		}
		for id := range l.entry.Strings {
			note(id)
		}
		for id := range l.entry.StringLists {
			note(id)
		}
		for id := range l.entry.Tops {
			note(id)
		}
		for id := range l.entry.Buckets {
			note(id)
		}
		for id := range l.entry.BucketStrings {
			note(id)
		}
		bl := bucketListsOf(l.entry)
		bl.ids(note)
		for _, ent := range entryEnts {
			w := work[ent]
			w.points = append(w.points, backfill.Point{Key: l.entry.Key, T: l.entry.At})
			w.served = append(w.served, l.entry.Features)
			w.lists = append(w.lists, l.entry.Lists)
			w.strs = append(w.strs, l.entry.Strings)
			w.strLists = append(w.strLists, l.entry.StringLists)
			w.tops = append(w.tops, l.entry.Tops)
			w.bkts = append(w.bkts, l.entry.Buckets)
			w.bstrs = append(w.bstrs, l.entry.BucketStrings)
			w.blists = append(w.blists, bl)
		}
	}
	if len(rep.Unknown) == 0 {
		rep.Unknown = nil
	}
	slices.Sort(entities)
	reports := map[string]*FeatureReport{}
	for _, ent := range entities {
		w := work[ent]
		vals, err := backfill.Compute(ctx, backfill.Options{
			Brokers: o.Brokers, Config: o.Config, Features: slices.Sorted(maps.Keys(w.ids)), Mode: o.Mode,
			Limits: o.Limits, Log: o.Log, ExtraOpts: o.ExtraOpts, Progress: o.Progress,
		}, w.points)
		if err != nil {
			return nil, fmt.Errorf("recompute entity %s: %w", ent, err)
		}
		rep.Records += vals.Events.Records
		for c, f := range vals.Features {
			fr := reports[f.ID]
			if fr == nil {
				fr = &FeatureReport{Feature: f.ID, Examples: []Example{}}
				reports[f.ID] = fr
				rep.Features = append(rep.Features, fr)
			}
			if isBucketList(f) { // served in the entry's bucket_lists, bucket_string_lists or bucket_tops
				fr.compareBucketListColumn(f, vals, c, w.points, w.blists, o.Examples)
				continue
			}
			if vals.IsTop(c) { // top_k: served in the entry's tops
				fr.Top = true
				for i, p := range w.points {
					served, ok := w.tops[i][f.ID]
					if !ok {
						continue
					}
					l, vok := vals.Top(i, c)
					var text []byte
					if vok {
						text = []byte(backfill.TopJSON(l, f.OutputType()))
					}
					fr.compareTop(p, served, text, vals.TopError(i, c), vok, o.Examples)
				}
				continue
			}
			if vals.IsBuckets(c) && f.OutputType() == aggregations.TypeString { // served in the entry's bucket_strings
				fr.Buckets, fr.String = true, true
				for i, p := range w.points {
					served, ok := w.bstrs[i][f.ID]
					if !ok {
						continue
					}
					cells, vok := vals.Buckets(i, c)
					recomputed := bucketMap(cells, vok, func(c backfill.BucketCell) string { return c.Str })
					fr.compareBucketStrings(p, served, recomputed, o.Examples)
				}
				continue
			}
			if vals.IsBuckets(c) { // a bucketed feature: served in the entry's buckets
				fr.Buckets = true
				for i, p := range w.points {
					served, ok := w.bkts[i][f.ID]
					if !ok {
						continue
					}
					cells, vok := vals.Buckets(i, c)
					recomputed := bucketMap(cells, vok, func(c backfill.BucketCell) float64 { return c.Value })
					fr.compareBuckets(p, served, recomputed, o.Tolerance, o.Examples)
				}
				continue
			}
			if vals.IsString(c) { // served in the entry's strings or string lists
				fr.String, fr.List = true, vals.IsList(c)
				for i, p := range w.points {
					if fr.List {
						served, ok := w.strLists[i][f.ID]
						if !ok {
							continue
						}
						recomputed, vok := vals.StrList(i, c)
						fr.compareStrings(p, nil, nil, served, recomputed, served != nil, vok, o.Examples)
						continue
					}
					served, ok := w.strs[i][f.ID]
					if !ok {
						continue
					}
					var recomputed *string
					if s, vok := vals.Str(i, c); vok {
						recomputed = &s
					}
					fr.compareStrings(p, served, recomputed, nil, nil, served != nil, recomputed != nil, o.Examples)
				}
				continue
			}
			if vals.IsList(c) { // first_k, last_k: served in the entry's lists
				fr.List = true
				for i, p := range w.points {
					served, ok := w.lists[i][f.ID]
					if !ok {
						continue
					}
					recomputed, vok := vals.List(i, c)
					if !vok {
						recomputed = nil
					}
					fr.compareList(p, served, recomputed, ok && served != nil, vok, o.Examples)
				}
				continue
			}
			for i, p := range w.points {
				served, ok := w.served[i][f.ID]
				if !ok {
					continue
				}
				v, vok := vals.Get(i, c)
				var recomputed *float64
				if vok {
					recomputed = &v
				}
				fr.compare(p, served, recomputed, o.Tolerance, o.Examples)
			}
		}
	}
	slices.SortFunc(rep.Features, func(a, b *FeatureReport) int { return cmp.Compare(a.Feature, b.Feature) })
	for _, fr := range rep.Features {
		rep.Compared += fr.Rows
		rep.Mismatches += fr.Mismatches
	}
	rep.DurationMS = time.Since(began).Milliseconds()
	return rep, nil
}

// compare adds one row to fr.
func (fr *FeatureReport) compare(p backfill.Point, served, recomputed *float64, tol float64, examples int) {
	fr.Rows++
	match := true
	switch {
	case served == nil && recomputed == nil:
	case served == nil || recomputed == nil:
		match = false
		fr.NullMismatches++
	default:
		a, b := *served, *recomputed
		abs := math.Abs(a - b)
		rel := 0.0
		if abs > 0 {
			rel = abs / math.Max(math.Abs(a), math.Abs(b))
		}
		if a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
			fr.MaxAbsDiff = math.Max(fr.MaxAbsDiff, abs)
			fr.MaxRelDiff = math.Max(fr.MaxRelDiff, rel)
			match = abs <= tol*math.Max(math.Abs(a), math.Abs(b))
		}
	}
	if match {
		return
	}
	fr.Mismatches++
	if len(fr.Examples) < examples {
		fr.Examples = append(fr.Examples, Example{Key: p.Key, At: p.T, Served: served, Recomputed: recomputed})
	}
}

// compareList adds one row of a list feature to fr: served and recomputed
// match when both are null or both are lists of the same length whose
// elements are equal one by one, exactly (a list's elements are event
// values, not sums, so no tolerance applies; longs and booleans are exact
// as float64). hasS and hasR tell whether each side is a list (not null).
func (fr *FeatureReport) compareList(p backfill.Point, served, recomputed []float64, hasS, hasR bool, examples int) {
	fr.Rows++
	match := true
	switch {
	case !hasS && !hasR:
	case !hasS || !hasR:
		match = false
		fr.NullMismatches++
	default:
		match = len(served) == len(recomputed)
		for j := range min(len(served), len(recomputed)) {
			a, b := served[j], recomputed[j]
			if a == b || (math.IsNaN(a) && math.IsNaN(b)) {
				continue
			}
			match = false
			abs := math.Abs(a - b)
			fr.MaxAbsDiff = math.Max(fr.MaxAbsDiff, abs)
			fr.MaxRelDiff = math.Max(fr.MaxRelDiff, abs/math.Max(math.Abs(a), math.Abs(b)))
		}
	}
	if match {
		return
	}
	fr.Mismatches++
	if len(fr.Examples) < examples {
		ex := Example{Key: p.Key, At: p.T}
		if hasS {
			ex.ServedList = slices.Clone(served)
		}
		if hasR {
			ex.RecomputedList = slices.Clone(recomputed)
		}
		fr.Examples = append(fr.Examples, ex)
	}
}

// compareStrings adds one row of a string feature to fr: the served and
// recomputed string (s, r) or, for a list feature, lists (sl, rl) match when
// both are null or both equal, exactly (byte for byte, element by element).
// hasS and hasR tell whether each side is a value (not null).
func (fr *FeatureReport) compareStrings(p backfill.Point, s, r *string, sl, rl []string, hasS, hasR bool, examples int) {
	fr.Rows++
	match := true
	switch {
	case !hasS && !hasR:
	case !hasS || !hasR:
		match = false
		fr.NullMismatches++
	case fr.List:
		match = slices.Equal(sl, rl)
	default:
		match = *s == *r
	}
	if match {
		return
	}
	fr.Mismatches++
	if len(fr.Examples) < examples {
		ex := Example{Key: p.Key, At: p.T, ServedString: s, RecomputedString: r}
		if fr.List && hasS {
			ex.ServedStrings = slices.Clone(sl)
		}
		if fr.List && hasR {
			ex.RecomputedStrings = slices.Clone(rl)
		}
		fr.Examples = append(fr.Examples, ex)
	}
}

// compareBuckets adds one row of a bucketed feature to fr: served and
// recomputed maps (nil: null) match when both are null, or both have the
// same bucket keys and, bucket by bucket, values that match as compare's
// numbers do (within tol relative; null only against null).
func (fr *FeatureReport) compareBuckets(p backfill.Point, served, recomputed map[string]*float64, tol float64, examples int) {
	fr.Rows++
	match := true
	switch {
	case served == nil && recomputed == nil:
	case served == nil || recomputed == nil:
		match = false
		fr.NullMismatches++
	default:
		match = len(served) == len(recomputed)
		for k, a := range served {
			b, ok := recomputed[k]
			switch {
			case !ok:
				match = false
			case a == nil && b == nil:
			case a == nil || b == nil:
				match = false
			case *a != *b:
				abs := math.Abs(*a - *b)
				rel := abs / math.Max(math.Abs(*a), math.Abs(*b))
				fr.MaxAbsDiff = math.Max(fr.MaxAbsDiff, abs)
				fr.MaxRelDiff = math.Max(fr.MaxRelDiff, rel)
				if abs > tol*math.Max(math.Abs(*a), math.Abs(*b)) {
					match = false
				}
			}
		}
	}
	if match {
		return
	}
	fr.Mismatches++
	if len(fr.Examples) < examples {
		fr.Examples = append(fr.Examples, Example{Key: p.Key, At: p.T, ServedBuckets: maps.Clone(served), RecomputedBuckets: maps.Clone(recomputed)})
	}
}

// compareBucketStrings adds one row of a bucketed string feature to fr:
// served and recomputed maps (nil: null) match when both are null, or both
// have the same bucket keys and, bucket by bucket, the same string exactly
// (byte for byte; null only against null).
func (fr *FeatureReport) compareBucketStrings(p backfill.Point, served, recomputed map[string]*string, examples int) {
	fr.Rows++
	match := true
	switch {
	case served == nil && recomputed == nil:
	case served == nil || recomputed == nil:
		match = false
		fr.NullMismatches++
	default:
		match = maps.EqualFunc(served, recomputed, func(a, b *string) bool {
			return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
		})
	}
	if match {
		return
	}
	fr.Mismatches++
	if len(fr.Examples) < examples {
		fr.Examples = append(fr.Examples, Example{Key: p.Key, At: p.T, ServedBucketStrings: maps.Clone(served), RecomputedBucketStrings: maps.Clone(recomputed)})
	}
}

// bucketMap is a recomputed bucketed value as the lookup log carries one:
// nil when ok is false (null), else each cell's value by its key, nil for
// a cell without one.
func bucketMap[T any](cells []backfill.BucketCell, ok bool, value func(backfill.BucketCell) T) map[string]*T {
	if !ok {
		return nil
	}
	m := make(map[string]*T, len(cells))
	for _, cell := range cells {
		if cell.OK {
			v := value(cell)
			m[cell.Key] = &v
		} else {
			m[cell.Key] = nil
		}
	}
	return m
}
