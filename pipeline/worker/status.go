package worker

// Status: the feature versions' registration and the per-partition status
// records (ready or warming up, freshness) in the registry.

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// register checks the feature file against the registry (refusing a changed
// definition under an existing version) and registers new versions.
func (w *Worker) register(ctx context.Context) error {
	topic := w.o.Config.Kafka.RegistryTopic
	view, err := registry.Load(ctx, kafka.ConnOf(w.o.Brokers, w.o.Config), topic, w.log)
	if err != nil {
		return fmt.Errorf("read feature registry: %w", err)
	}
	if err := registry.Check(w.o.Config, view); err != nil {
		return err
	}
	return registry.Register(ctx, w.cl, topic, w.o.Config, view, w.o.Actor+" via "+w.name())
}

// reportStatus records, for every owned partition and feature version,
// whether it is ready or warming up, with the time of its last publication.
// Best effort: a failure is logged and retried at the next interval.
func (w *Worker) reportStatus(ctx context.Context) {
	w.lastStatus = time.Now()
	lastPublish := w.pub.lastPublished()
	var recs []*kgo.Record
	w.mu.Lock()
	for _, ps := range w.parts {
		if ps.restoring {
			continue
		}
		warming := map[int]bool{}
		for _, bf := range ps.boot {
			warming[bf.idx] = true
		}
		for _, i := range ps.republish {
			warming[i] = true
		}
		for i := range ps.plan.Features {
			state := registry.StateReady
			if warming[i] {
				state = registry.StateWarmingUp
			}
			recs = w.appendStatus(recs, ps, i, state, lastPublish, ps.published, 0)
		}
	}
	w.mu.Unlock()
	for _, r := range recs {
		w.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				w.log.Debug("registry status", zap.Error(err))
			}
		})
	}
}

// appendStatus appends the registry record of feature i's status in ps's
// partition: state (registry.StateReady or StateWarmingUp) as of at, with a
// bootstrap's progress [next, end) or, when ready, the offset publication
// is flushed through as next (0: omitted). A record that cannot be encoded
// is logged and left out: status is best effort.
func (w *Worker) appendStatus(recs []*kgo.Record, ps *partState, i int, state string, at time.Time, next, end int64) []*kgo.Record {
	r, err := registry.StatusRecord(w.o.Config.Kafka.RegistryTopic, registry.Status{
		Feature: ps.plan.Features[i].ID, Topic: ps.tp.topic, Partition: ps.tp.partition,
		State: state, UpdatedAt: at.UTC(), Next: next, End: end})
	if err != nil {
		w.log.Warn("encode registry status", zap.String("feature", ps.plan.Features[i].ID), zap.Error(err))
		return recs
	}
	return append(recs, r)
}
