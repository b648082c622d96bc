package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/schemaregistry"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// Mode is the point-in-time rule of a backfill.
type Mode string

const (
	// ModeEvent (the default) includes an event in the value as of T when its
	// event time is before T.
	ModeEvent Mode = "event"
	// ModeArrival also requires the event's Kafka record timestamp (its
	// arrival) to be <= T: only what the online system could have seen at T.
	// It relies on record timestamps being CreateTime set by the producer at
	// send time, or LogAppendTime.
	ModeArrival Mode = "arrival"
)

// ErrInvalidOptions is wrapped by the errors of Run for unusable Options.
var ErrInvalidOptions = errors.New("backfill: invalid options")

// ParseMode parses "event" or "arrival"; "" is ModeEvent.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeEvent:
		return ModeEvent, nil
	case ModeArrival:
		return ModeArrival, nil
	}
	return "", fmt.Errorf("%w: point-in-time mode %q: want %q or %q", ErrInvalidOptions, s, ModeEvent, ModeArrival)
}

// Options configure Run. Brokers, Config, Spine and Out are required.
type Options struct {
	// Brokers are the Kafka bootstrap brokers of the source topics; the
	// clients connect with Config.Kafka.Security (TLS, SASL).
	Brokers []string
	// Config is the validated feature file.
	Config *config.File
	// Features are feature references ("name" for the default version,
	// "name@N" for version N), one output column each, named "name", or
	// "name@N" when N is not the default version. All must belong to one
	// entity. Default: the default version of every feature of the entity
	// whose key column the spine has (exactly one entity must match).
	Features []string
	// FeatureService names a feature service of Config to use instead of
	// Features: exactly the same as listing the service's features (its
	// bare names resolve as bare names in Features do). Features must then
	// be empty. The manifest records the name, and each column's resolved
	// version and definition hash as always. Default "": none.
	FeatureService string
	// Spine is the input: a .csv or .parquet file with the entity's key
	// column, a "timestamp" column (RFC 3339 or epoch milliseconds; for
	// Parquet also TIMESTAMP or DATE) and any other columns, which pass
	// through unchanged.
	Spine string
	// Out is the output, .csv or .parquet: every good spine row in spine
	// order plus one column per feature (empty cell / null for null). The
	// manifest goes to ManifestPath(Out). Both are written atomically, and
	// only when Run succeeds.
	Out string
	// Mode is the point-in-time rule. Default ModeEvent.
	Mode Mode
	// SkipBadRows drops spine rows with a missing key or an unparseable
	// timestamp (counted in the manifest). Default false: such rows fail Run
	// before anything is written, with a *BadRowsError listing them.
	SkipBadRows bool
	// Progress receives a progress bar when it is a terminal, plain progress
	// lines otherwise. Default nil: no progress.
	Progress io.Writer
	// Log receives the Kafka client's warnings and a summary line. Default:
	// no logging.
	Log *zap.Logger
	// Now is the clock for the manifest's created_at and duration. Default
	// time.Now.
	Now func() time.Time

	// ExportEvents, when set, is a .parquet file that receives every valid
	// replayed event of the spine's entities (topic, partition, offset, key,
	// ts, arrival and one nullable double column per value field), for
	// comparisons with other engines (deploy/bench/backfill_duckdb.py).
	ExportEvents string
	// Limits are the event validation limits; they must equal the workers'
	// for training to see exactly the events serving saw. Default: the
	// events package defaults (MaxFuture 24h).
	Limits events.Limits
	// SchemaRegistry resolves the writer schema ids of sources with
	// encoding confluent. Default: a client made from the feature file's
	// kafka.schema_registry. A record whose schema cannot be fetched fails
	// the backfill (it is not skipped as invalid: the result would be wrong).
	SchemaRegistry *schemaregistry.Client
	// Snapshots, when set, is the workers' snapshot store (--snapshots DIR):
	// each source partition then starts from the state of the newest
	// snapshot usable for the spine (SnapshotUsable: all its events before
	// the earliest spine time, taken no later than it, holding every
	// requested feature with nothing a row reads expired) and replays only
	// the records after it, so windows may reach further back than the
	// topics' retention. Partitions without a usable snapshot are replayed
	// as without Snapshots; corrupt snapshots are logged and skipped. The
	// manifest names the snapshot of each partition (OffsetRange.Snapshot).
	// It assumes the workers' clock is the wall clock that stamped the
	// snapshots' CreatedAt. Cost: one download and verification of each
	// chosen SST, then one pass over its keys decoding the spine's entities.
	// Default nil: replay only.
	Snapshots *snapshot.Store
	// Dataset names and describes the dataset Run registers in the catalog
	// (see DatasetOptions for the defaults). The manifest records its
	// name@version (Manifest.Dataset).
	Dataset DatasetOptions
	// Shard, when set (Count > 0), makes Run compute one shard of a sharded
	// backfill (see the package doc, "Shards"): the spine rows whose key's
	// canonical partition p has p mod Count == Index, from those partitions
	// of the sources. Out is then the dataset's directory: the shard writes
	// Out/part-<i>-of-<N>.parquet and its manifest in Out/_shards/, and the
	// last shard to finish writes the dataset manifest ManifestPath(Out)
	// and registers the dataset, once. The union of the shards' rows is
	// exactly the single-process run's. Default: the zero Shard, one
	// process. Not with ExportEvents, nor in Compute.
	Shard Shard
	// ExtraOpts are appended to the Kafka client options (tests).
	ExtraOpts []kgo.Opt
}

// validate checks o and fills in defaults; files says whether Spine and Out
// are required (Run) or ignored (Compute).
func (o *Options) validate(files bool) error {
	var problems []string
	if len(o.Brokers) == 0 {
		problems = append(problems, "no brokers")
	}
	if o.Config == nil {
		problems = append(problems, "no feature file (Config)")
	}
	switch {
	case !files:
	case o.Spine == "":
		problems = append(problems, "no spine")
	default:
		if _, err := FormatOf(o.Spine); err != nil {
			problems = append(problems, "spine: "+err.Error())
		}
	}
	switch {
	case !files:
	case o.Out == "":
		problems = append(problems, "no output (Out)")
	case o.Shard.Sharded():
		if _, err := FormatOf(o.Out); err == nil {
			problems = append(problems, "output: a sharded backfill writes a directory of Parquet files, got the file name "+o.Out)
		}
	default:
		if _, err := FormatOf(o.Out); err != nil {
			problems = append(problems, "output: "+err.Error())
		}
	}
	if o.Shard.Sharded() {
		if _, err := ParseShard(o.Shard.String()); err != nil {
			problems = append(problems, err.Error())
		}
		if !files {
			problems = append(problems, "Compute does not shard")
		}
		if o.ExportEvents != "" {
			problems = append(problems, "export events: not with a shard")
		}
	}
	if o.ExportEvents != "" {
		if f, err := FormatOf(o.ExportEvents); err != nil || f != FormatParquet {
			problems = append(problems, "export events: want a .parquet file, got "+o.ExportEvents)
		}
	}
	if o.FeatureService != "" {
		switch {
		case len(o.Features) > 0:
			problems = append(problems, "give either features or a feature service, not both: feature service "+o.FeatureService+" already names its features")
		case o.Config != nil:
			if svc, err := o.Config.Service(o.FeatureService); err != nil {
				problems = append(problems, err.Error())
			} else {
				o.Features = slices.Clone(svc.Features)
			}
		}
	}
	m, err := ParseMode(string(o.Mode))
	if err != nil {
		problems = append(problems, err.Error())
	}
	o.Mode = m
	if files {
		if o.Dataset.Name == "" && o.Out != "" {
			o.Dataset.Name = datasetName(o.Out)
		}
		if err := registry.ValidName("dataset", o.Dataset.Name); err != nil {
			problems = append(problems, err.Error()+" (set the dataset name)")
		}
		if o.Dataset.Actor == "" {
			o.Dataset.Actor = registry.OSUser()
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, strings.Join(problems, "; "))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Limits.MaxFuture <= 0 {
		o.Limits.MaxFuture = events.DefaultMaxFuture
	}
	return nil
}

// Run builds the training data set described by o and returns its manifest
// (also written to ManifestPath(o.Out)). It reads the whole spine into
// memory, replays the needed offsets of the source topics (see the package
// doc), computes every feature as of every row's timestamp and writes the
// output. Nothing is written when it fails.
//
// With o.Shard it computes one shard (see Options.Shard) and returns the
// dataset's manifest when it was the last shard to finish (Manifest.Shards
// lists the files), its own shard manifest otherwise (Manifest.Shard set,
// no Dataset).
func Run(ctx context.Context, o Options) (*Manifest, error) {
	if err := o.validate(true); err != nil {
		return nil, err
	}
	began := o.Now()
	out, outFormat := o.Out, Format("")
	if o.Shard.Sharded() {
		if _, err := os.Stat(ManifestPath(o.Out)); err == nil {
			return nil, fmt.Errorf("%s already describes a complete dataset (%s): give each sharded run a new --out directory", o.Out, ManifestPath(o.Out))
		}
		if err := os.MkdirAll(filepath.Join(o.Out, shardDir), 0o755); err != nil {
			return nil, fmt.Errorf("create the dataset directory: %w", err)
		}
		out, outFormat = filepath.Join(o.Out, o.Shard.PartFile()), FormatParquet
	} else {
		outFormat, _ = FormatOf(o.Out)
	}
	b, err := o.build(ctx)
	if err != nil {
		return nil, err
	}
	sp, cols, st := b.sp, b.cols, b.ev.stats
	if err := writeOutput(out, outFormat, sp, b.ev.res); err != nil {
		return nil, err
	}
	m := &Manifest{
		ManifestVersion: ManifestVersion,
		CreatedAt:       began.UTC(),
		Config:          o.Config.Path,
		Entity:          b.ent.Name,
		KeyColumn:       strings.Join(b.ent.Keys, ","),
		PointInTime:     o.Mode,
		FeatureService:  o.FeatureService,
		Spine: ManifestSpine{Path: o.Spine, Format: sp.format, SHA256: sp.sha256, Rows: sp.rows(),
			BadRows: len(sp.bad), BadExamples: sp.bad[:min(len(sp.bad), maxReported)]},
		Output:    ManifestOutput{Path: out, Format: outFormat, Rows: len(sp.good)},
		TimeRange: timeRange(sp.times),
		Sources:   b.ev.ranges,
		Events:    EventStats{Records: st.records.Load(), Kept: st.kept.Load(), Rejected: st.rejected},
	}
	if m.Sources == nil {
		m.Sources = []OffsetRange{}
	}
	for j, c := range cols {
		mf := manifestFeature(c)
		mf.Statistics = b.ev.res.columnStats(j)
		m.Features = append(m.Features, mf)
	}
	if o.Shard.Sharded() {
		return o.finishShard(ctx, m, began)
	}
	if m.Dataset, err = o.registerDataset(ctx, m); err != nil {
		_ = os.Remove(o.Out) // nothing is written when Run fails
		return nil, err
	}
	m.DurationMS = o.Now().Sub(began).Milliseconds()
	if err := writeManifest(ManifestPath(o.Out), m); err != nil {
		return nil, err
	}
	o.Log.Info("backfill written", zap.String("out", o.Out), zap.Int("rows", len(sp.good)),
		zap.Int("features", len(cols)), zap.Int64("records", m.Events.Records), zap.Strings("snapshots", sortedSnapshotIDs(m.Sources)),
		zap.Int64("duration_ms", m.DurationMS))
	return m, nil
}

// built is what build computed: the spine (with only the shard's rows in
// good, keys and times when sharded), its entity, the columns and their values.
type built struct {
	sp   *spine
	ent  *config.Entity
	cols []column
	ev   *evaluation
}

// build reads and parses the spine, resolves the columns and evaluates
// them; o is validated.
func (o *Options) build(ctx context.Context) (*built, error) {
	sp, err := readSpine(o.Spine)
	if err != nil {
		return nil, err
	}
	ent, cols, err := resolveColumns(o.Config, o.Features, sp)
	if err != nil {
		return nil, err
	}
	if o.Shard.Sharded() {
		feats := make([]*config.Feature, len(cols))
		for i, c := range cols {
			feats[i] = c.feature
		}
		if err := config.ListFeatureError("a sharded backfill", feats); err != nil {
			return nil, err
		}
	}
	if err := sp.parse(ent.Keys); err != nil {
		return nil, err
	}
	if len(sp.bad) > 0 && !o.SkipBadRows {
		return nil, &BadRowsError{Path: o.Spine, Rows: sp.bad}
	}
	ev, err := o.evaluate(ctx, cols, sp.keys, sp.times)
	if err != nil {
		return nil, err
	}
	if ev.rows != nil { // a shard: keep its rows, in spine order
		part := *sp
		part.good, part.keys, part.times = make([]int, len(ev.rows)), make([]string, len(ev.rows)), make([]int64, len(ev.rows))
		for i, r := range ev.rows {
			part.good[i], part.keys[i], part.times[i] = sp.good[r], sp.keys[r], sp.times[r]
		}
		sp = &part
	}
	return &built{sp: sp, ent: ent, cols: cols, ev: ev}, nil
}

// resolveColumns picks the entity and the feature columns.
func resolveColumns(cfg *config.File, refs []string, sp *spine) (*config.Entity, []column, error) {
	var feats []*config.Feature
	var names []string
	if len(refs) == 0 {
		var matched []*config.Entity
		var all []string
		for _, e := range cfg.Entities {
			all = append(all, fmt.Sprintf("%s (%s)", e.Name, e.KeyList()))
			if len(cfg.EntityFeatures(e.Name)) > 0 && !slices.ContainsFunc(e.Keys, func(k string) bool { return sp.column(k) < 0 }) {
				matched = append(matched, e)
			}
		}
		switch len(matched) {
		case 0:
			return nil, nil, fmt.Errorf("spine %s has no key column of an entity with features (entities: %s; spine columns: %s)",
				sp.path, strings.Join(all, ", "), strings.Join(sp.columns, ", "))
		case 1:
		default:
			if widest := widestEntity(matched); widest != nil {
				matched = []*config.Entity{widest}
				break
			}
			return nil, nil, fmt.Errorf("spine %s has the key columns of several entities (%s, %s, ...): pass --features to choose",
				sp.path, matched[0].Name, matched[1].Name)
		}
		for _, f := range cfg.EntityFeatures(matched[0].Name) {
			if slices.Contains(names, f.Name) {
				continue
			}
			def, err := cfg.Feature(f.Name)
			if err != nil {
				return nil, nil, err
			}
			feats, names = append(feats, def), append(names, f.Name)
		}
	} else {
		for _, ref := range refs {
			ref = strings.TrimSpace(ref)
			f, err := cfg.Feature(ref)
			if err != nil {
				return nil, nil, err
			}
			name := f.Name
			if base, _, exact := strings.Cut(ref, "@"); exact {
				if def, err := cfg.Feature(base); err != nil || def != f {
					name = f.ID
				}
			}
			feats, names = append(feats, f), append(names, name)
		}
	}
	ent := feats[0].EntityRef
	cols := make([]column, len(feats))
	for i, f := range feats {
		if f.EntityRef != ent {
			return nil, nil, fmt.Errorf("features %s (entity %s) and %s (entity %s) have different entities; a spine has one entity",
				feats[0].ID, ent.Name, f.ID, f.Entity)
		}
		if slices.Contains(names[:i], names[i]) {
			return nil, nil, fmt.Errorf("feature column %q is requested twice", names[i])
		}
		if sp.column(names[i]) >= 0 {
			return nil, nil, fmt.Errorf("spine %s already has a column %q; rename it or drop that feature", sp.path, names[i])
		}
		cols[i] = column{name: names[i], feature: f}
	}
	return ent, cols, nil
}

// widestEntity returns, among entities whose key columns a spine has, the
// one whose key fields include every other's (a spine with user_id and
// merchant_id is of the composite user_merchant, not of user or merchant),
// or nil if there is no such one.
func widestEntity(matched []*config.Entity) *config.Entity {
	var widest *config.Entity
	for _, e := range matched {
		if widest == nil || len(e.Keys) > len(widest.Keys) {
			widest = e
		}
	}
	for _, e := range matched {
		if e == widest {
			continue
		}
		if len(e.Keys) == len(widest.Keys) || slices.ContainsFunc(e.Keys, func(k string) bool { return !slices.Contains(widest.Keys, k) }) {
			return nil
		}
	}
	return widest
}

// planSources assigns every column to its source and computes where the
// replay of each source starts.
func planSources(cfg *config.File, cols []column, times []int64, maxFutureMS int64) ([]*sourceReplay, error) {
	plans, err := events.Plans(cfg)
	if err != nil {
		return nil, err
	}
	minT := int64(math.MaxInt64)
	for _, t := range times {
		minT = min(minT, t)
	}
	var srcs []*sourceReplay
	index := map[string]int{}
	rekey := map[*config.Repartition]*events.Plan{}
	for c := range cols {
		f := cols[c].feature
		plan := plans[f.SourceRef.Topic]
		if f.Repartition != nil {
			// Re-keyed online through a repartition topic; here the source
			// is replayed and re-keyed in memory, by the same key-building
			// code (the spine has one entity, so one plan per topic).
			if rekey[f.Repartition] == nil {
				rekey[f.Repartition] = events.RekeyPlan(f.Repartition)
			}
			plan = rekey[f.Repartition]
		}
		if plan == nil {
			return nil, fmt.Errorf("feature %s: source topic %s has no plan", f.ID, f.SourceRef.Topic)
		}
		i, ok := index[plan.Source.Topic]
		if !ok {
			i = len(srcs)
			index[plan.Source.Topic] = i
			srcs = append(srcs, &sourceReplay{plan: plan, startMS: math.MaxInt64})
		}
		cols[c].src = i
		found := false
		for _, fp := range plan.Features {
			if fp.Feature == f {
				cols[c].plan, found = fp, true
			}
		}
		if !found {
			return nil, fmt.Errorf("feature %s is not in the plan of topic %s", f.ID, plan.Source.Topic)
		}
		s := srcs[i]
		if f.Window.Lifetime() {
			s.startMS = math.MinInt64
		} else if s.startMS != math.MinInt64 && len(times) > 0 {
			s.startMS = min(s.startMS, minT-f.Window.Size-f.Window.Hop-maxFutureMS)
		}
	}
	return srcs, nil
}
