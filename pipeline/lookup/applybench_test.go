package lookup

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// BenchmarkApplyLog measures the replica's apply path (parse, apply to the
// decoded views, encode and commit) on batches shaped like the feature log
// of `featurepipe load --freshness` at 10,000 events/s: per event 5 tiles
// of 20 features of one of 10,000 users, one tile of one of 200 merchants
// and one of a user-merchant pair seen once; 7,000 events (49,000 records)
// per batch, as one poll of a replica behind by a few hundred
// milliseconds. One op is one batch; reported per record (wall and CPU
// time of the process, Pebble's flushes and compactions, where the
// records are merged into the views, included: on a shared machine the
// CPU time moves less).
func BenchmarkApplyLog(b *testing.B) {
	cfg := loadTestConfig(b)
	svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: openTestStore(b), LookupLogSample: NoLookupLog})
	if err != nil {
		b.Fatal(err)
	}
	a := newLogApplier(svc.cache.enabled())
	window := aggregations.Window{Size: 7 * aggregations.Day, Hop: aggregations.Hour}
	T := fixtureNow.UnixMilli()
	rng := rand.New(rand.NewPCG(1, 2))
	const events, users, perBatch = 7000, 10_000, 49_000
	var ids [20]string
	for i := range ids {
		ids[i] = fmt.Sprintf("f%d@1", i)
	}
	off, pair := int64(0), 0
	record := func(entity, key, id string) *kgo.Record {
		ref := keys.TileRef{Entity: entity, EntityKey: key, FeatureID: id, Start: window.TileStart(T - rng.Int64N(7*aggregations.Day))}
		r := &kgo.Record{Offset: off, Timestamp: time.UnixMilli(T)}
		off++
		_, r.Key, r.Value = featurelog.Append(nil, ref, aggregations.Tile{Start: ref.Start, IR: aggregations.IR{Count: 1 + rng.Int64N(9), Sum: 3}}, true)
		return r
	}
	batch := func() []*kgo.Record {
		recs := make([]*kgo.Record, 0, perBatch)
		for range events {
			u := fmt.Sprintf("u%05d", rng.IntN(users))
			for _, f := range rng.Perm(len(ids))[:5] {
				recs = append(recs, record("user", u, ids[f]))
			}
			m := fmt.Sprintf("m%03d", rng.IntN(200))
			recs = append(recs, record("merchant", m, "m_count@1"))
			pair++
			recs = append(recs, record("user_merchant", fmt.Sprintf("%s|%s|%d", u, m, pair), "um_count@1"))
		}
		return recs
	}
	// Warm up: every user has a view in Pebble before the measured batches.
	for range 5 {
		if err := svc.applyLog(a, cfg.Kafka.FeatureLogTopic, 0, batch()); err != nil {
			b.Fatal(err)
		}
	}
	batches := make([][]*kgo.Record, b.N)
	for i := range batches {
		batches[i] = batch()
	}
	cpu0 := processCPU(b)
	b.ResetTimer()
	for i := range b.N {
		if err := svc.applyLog(a, cfg.Kafka.FeatureLogTopic, 0, batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perBatch), "ns/record")
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N*perBatch), "cpu-ns/record")
}

// processCPU is the CPU time (user and system) of this process so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
