package backfill

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

// ManifestVersion is the version of the manifest format written by Run.
const ManifestVersion = 1

// ManifestPath is where Run writes the manifest of the output at out.
func ManifestPath(out string) string { return out + ".manifest.json" }

// Manifest describes a training data set: enough to reproduce it (feature
// definitions by hash, the spine by checksum, the exact offsets replayed and
// the point-in-time mode) and to catalog it.
type Manifest struct {
	ManifestVersion int       `json:"manifest_version"`
	CreatedAt       time.Time `json:"created_at"`
	Config          string    `json:"config"` // feature file path
	Entity          string    `json:"entity"`
	KeyColumn       string    `json:"key_column"`
	PointInTime     Mode      `json:"point_in_time"`
	// FeatureService is the feature service whose features are the
	// columns (Options.FeatureService), "" when they were listed.
	FeatureService string `json:"feature_service,omitempty"`
	// Dataset is the name@version this output is registered as in the
	// catalog (Options.Dataset).
	Dataset string `json:"dataset,omitempty"`

	Features []ManifestFeature `json:"features"`
	Spine    ManifestSpine     `json:"spine"`
	Output   ManifestOutput    `json:"output"`
	// TimeRange spans the timestamps of the rows written; nil without rows.
	TimeRange *TimeRange `json:"time_range,omitempty"`
	// Sources are the offsets replayed per topic and partition, sorted.
	Sources []OffsetRange `json:"sources"`
	Events  EventStats    `json:"events"`
	// DurationMS is how long Run took, for benchmarks; not part of the data.
	// For a sharded dataset: from the first shard's start to the merge.
	DurationMS int64 `json:"duration_ms"`

	// Shard is set in a shard's own manifest (Options.Shard; in the
	// dataset directory's _shards folder): which shard it describes.
	Shard *Shard `json:"shard,omitempty"`
	// Shards list the files of a sharded dataset, in shard order; its
	// Output.Path is then the directory holding them. Its Sources are the
	// union of the shards' (a source read in full by every shard, being
	// re-keyed, appears once per distinct range read) and its Events the
	// sums of theirs.
	Shards []ManifestShard `json:"shards,omitempty"`
}

// ManifestShard is one shard's file of a sharded dataset.
type ManifestShard struct {
	Index int    `json:"index"`
	Path  string `json:"path"`
	Rows  int    `json:"rows"`
	// DurationMS is how long the shard took.
	DurationMS int64 `json:"duration_ms"`
}

// ManifestFeature is one feature column and the definition it was computed from.
type ManifestFeature struct {
	Column      string   `json:"column"`
	Name        string   `json:"name"`
	Version     int      `json:"version"`
	Hash        string   `json:"hash"` // config.Feature.Hash
	Aggregation string   `json:"aggregation"`
	Field       string   `json:"field,omitempty"`
	Window      string   `json:"window"` // e.g. "30d/1d", "lifetime/1d"
	WindowMS    int64    `json:"window_ms"`
	HopMS       int64    `json:"hop_ms"`
	Source      string   `json:"source"`
	Topic       string   `json:"topic"`
	Default     *float64 `json:"default,omitempty"`
	// TTLMS is the feature's ttl (ms), 0 without one.
	TTLMS int64 `json:"ttl_ms,omitempty"`
	// Expression and Inputs define a derived feature (Aggregation
	// "derived", no window or source): its expression and the feature
	// versions it reads.
	Expression string   `json:"expression,omitempty"`
	Inputs     []string `json:"inputs,omitempty"`
	// Statistics of the column's values (count, null rate, mean, stddev,
	// min, max, quantiles and the sketch behind them; see
	// pipeline/monitor): the training baseline live values are compared
	// with (featurepipe_feature_drift_psi).
	Statistics *monitor.Stats `json:"statistics,omitempty"`
}

// ManifestSpine identifies the input spine.
type ManifestSpine struct {
	Path   string `json:"path"`
	Format Format `json:"format"`
	SHA256 string `json:"sha256"`
	Rows   int    `json:"rows"` // data rows in the file
	// BadRows were dropped (only with SkipBadRows; otherwise Run fails).
	BadRows     int      `json:"bad_rows"`
	BadExamples []BadRow `json:"bad_examples,omitempty"` // the first few
}

// ManifestOutput describes the written file.
type ManifestOutput struct {
	Path   string `json:"path"`
	Format Format `json:"format"`
	Rows   int    `json:"rows"`
}

// TimeRange is the span of the spine timestamps written.
type TimeRange struct {
	Min   time.Time `json:"min"`
	Max   time.Time `json:"max"`
	MinMS int64     `json:"min_ms"`
	MaxMS int64     `json:"max_ms"`
}

// EventStats count the records replayed.
type EventStats struct {
	Records int64 `json:"records"` // source records read
	// Kept are the valid events of the spine's entities.
	Kept int64 `json:"kept"`
	// Rejected counts the records skipped as invalid, by events.Reason* code:
	// the records a worker sends to the dead-letter topic.
	Rejected map[string]int64 `json:"rejected"`
}

func manifestFeature(c column) ManifestFeature {
	f := c.feature
	if f.IsDerived() {
		m := ManifestFeature{Column: c.name, Name: f.Name, Version: f.Version, Hash: f.Hash,
			Aggregation: "derived", Expression: f.Derived.Expr}
		for _, in := range f.Derived.Inputs {
			m.Inputs = append(m.Inputs, in.ID)
		}
		return m
	}
	return ManifestFeature{TTLMS: f.TTL,
		Column: c.name, Name: f.Name, Version: f.Version, Hash: f.Hash,
		Aggregation: f.Aggregation.String(), Field: f.Field,
		Window: f.Window.String(), WindowMS: f.Window.Size, HopMS: f.Window.Hop,
		Source: f.Source, Topic: f.SourceRef.Topic, Default: f.Default,
	}
}

func timeRange(times []int64) *TimeRange {
	if len(times) == 0 {
		return nil
	}
	lo, hi := times[0], times[0]
	for _, t := range times {
		lo, hi = min(lo, t), max(hi, t)
	}
	return &TimeRange{Min: time.UnixMilli(lo).UTC(), Max: time.UnixMilli(hi).UTC(), MinMS: lo, MaxMS: hi}
}

// writeManifest writes m as indented JSON beside the output.
func writeManifest(path string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	return writeAtomically(path, func(f *os.File) error {
		_, err := f.Write(append(b, '\n'))
		return err
	})
}

// ReadManifest reads a manifest written by Run.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return &m, nil
}

// Baselines returns the statistics of every feature of the data set, by
// feature id (name@version), as drift baselines named after the dataset
// (its name@version, or fallback when it was not registered). Features of a
// manifest written before statistics were recorded are left out.
func (m *Manifest) Baselines(fallback string) map[string]monitor.Baseline {
	name := m.Dataset
	if name == "" {
		name = fallback
	}
	out := map[string]monitor.Baseline{}
	for _, f := range m.Features {
		if f.Statistics != nil {
			out[fmt.Sprintf("%s@%d", f.Name, f.Version)] = monitor.Baseline{Name: name, Stats: f.Statistics}
		}
	}
	return out
}
