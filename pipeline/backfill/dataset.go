package backfill

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// DatasetOptions describe the dataset a Run registers in the catalog (the
// registry topic of the feature file).
type DatasetOptions struct {
	// Name of the dataset; each Run registers its next version (name@1,
	// name@2, ...). Default: the output file's name without its extension.
	Name        string
	Description string
	Owner       string
	// Actor is who ran the backfill. Default: the OS user (registry.OSUser).
	Actor string
}

// datasetName is the default dataset name of the output out.
func datasetName(out string) string {
	base := filepath.Base(out)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// registerDataset registers m as the next version of the dataset named in
// o.Dataset and returns its name@version.
func (o *Options) registerDataset(ctx context.Context, m *Manifest) (string, error) {
	loc, err := filepath.Abs(m.Output.Path)
	if err != nil {
		loc = m.Output.Path
	}
	d := registry.Dataset{
		Name: o.Dataset.Name, Description: o.Dataset.Description, Owner: o.Dataset.Owner,
		Service: m.FeatureService, Entity: m.Entity,
		SpinePath: m.Spine.Path, SpineSHA256: m.Spine.SHA256, Rows: m.Output.Rows,
		PointInTime: string(m.PointInTime), Location: loc, Format: string(m.Output.Format),
		Config: m.Config, CreatedAt: m.CreatedAt, Actor: o.Dataset.Actor,
	}
	for _, f := range m.Features {
		id := fmt.Sprintf("%s@%d", f.Name, f.Version)
		d.Features = append(d.Features, registry.FeatureRef{Feature: id, Column: f.Column, Hash: f.Hash})
		if f.Statistics != nil {
			if d.Statistics == nil {
				d.Statistics = map[string]*monitor.Stats{}
			}
			d.Statistics[id] = f.Statistics
		}
	}
	if m.TimeRange != nil {
		d.TimeRange = &registry.TimeRange{Min: m.TimeRange.Min, Max: m.TimeRange.Max}
	}
	cl, err := kafka.NewClient(kafka.ConnOf(o.Brokers, o.Config), "featurepipe-backfill", o.Log, o.ExtraOpts...)
	if err != nil {
		return "", fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, cl, o.Config); err != nil {
		return "", err
	}
	reg, err := registry.RegisterDataset(ctx, cl, o.Config.Kafka.RegistryTopic, d)
	if err != nil {
		return "", fmt.Errorf("register the dataset in the catalog: %w", err)
	}
	return reg.ID(), nil
}
