// Package worker is featurepipe's stream worker. Workers form one Kafka
// consumer group over the source topics; per assigned partition a worker
// decodes records, routes them by entity, updates the tiles of every feature
// the source feeds, and commits the state together with the partition's next
// offset in ONE Pebble batch. Only after that commit does it publish the
// changed tiles to the compacted feature log.
//
// Exactly-once effect: the offset to resume from is read from Pebble on every
// (re)assignment, never from the group's committed offset (which is kept only
// as a hint for monitoring), so a record contributes to state exactly once
// across kill -9, restarts and rebalances. A partition new to this worker's
// store is replayed from the earliest retained offset.
//
// Publication is at-least-once and idempotent: feature-log records carry the
// latest value of a tile, keyed by (entity, feature version, tile). The store
// keeps, per partition, the source offset through which publication was
// flushed; on assignment the worker re-reads records between that offset and
// the applied offset without applying them, and republishes the current
// value of every tile they touch. A crash between commit and publish thus
// loses nothing.
package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// Options configure a Worker. Brokers, Config and Store are required.
type Options struct {
	Brokers []string
	Config  *config.File
	Store   *state.Store
	// Registerer receives the worker metrics. Default: a private registry.
	Registerer prometheus.Registerer
	// Log defaults to a no-op logger.
	Log *zap.Logger
	// Now is the wall clock. Default time.Now. It decides which events are
	// still in the future (kept pending in their tile) and which tiles expire.
	Now func() time.Time
	// MaxPollRecords bounds one batch. Default 20,000. Larger batches
	// amortize the Pebble commit and fsync; smaller ones publish sooner.
	MaxPollRecords int
	// Limits bound what a valid event is (future event times, key size);
	// invalid events go to the dead-letter topic. Defaults: events.Limits.
	Limits events.Limits
	// ClientID names this worker in Kafka. Default "featurepipe-worker".
	ClientID string
	// InstanceID, when set, makes this worker a static group member
	// (KIP-345): a restart with the same id within SessionTimeout takes its
	// partitions back without a rebalance. Default "": dynamic membership.
	InstanceID string
	// SessionTimeout is how long the group waits for a silent worker (one
	// killed with kill -9) before giving its partitions to others.
	// Default 10s; the broker bounds it (Kafka's minimum is 6s).
	SessionTimeout time.Duration
	// ExtraOpts are appended to the franz-go options (tests use them to
	// shorten session timeouts).
	ExtraOpts []kgo.Opt
}

// Worker is one stream worker. Create with New, run with Run.
type Worker struct {
	o       Options
	log     *zap.Logger
	m       *metrics.Worker
	plans   map[string]*events.Plan
	decoder *events.Decoder
	cl      *kgo.Client
	pubErr  atomic.Pointer[error]

	mu    sync.Mutex
	parts map[topicPartition]*partState

	// Reused per batch (only the poll goroutine touches them).
	cache   map[string]*entityState
	dirty   map[dirtyTile]struct{}
	valBuf  []byte
	keyBuf  []byte
	dec     events.Event
	touched []*partState
}

type topicPartition struct {
	topic     string
	partition int32
}

// partState tracks one owned partition.
type partState struct {
	tp   topicPartition
	plan *events.Plan
	// applyFrom: records below it are already in state; they are re-read
	// only to republish the tiles they touched.
	applyFrom int64
	next      int64 // next offset to process
	published int64 // offset through which publication is flushed
	hwm       int64
}

type dirtyTile struct {
	es      *entityState
	feature int
	start   int64
}

// New validates the options and builds the processing plan.
func New(o Options) (*Worker, error) {
	if len(o.Brokers) == 0 || o.Config == nil || o.Store == nil {
		return nil, errors.New("worker: Brokers, Config and Store are required")
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxPollRecords <= 0 {
		o.MaxPollRecords = 20000
	}
	if o.ClientID == "" {
		o.ClientID = "featurepipe-worker"
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 10 * time.Second
	}
	plans, err := events.Plans(o.Config)
	if err != nil {
		return nil, err
	}
	return &Worker{
		o: o, log: o.Log, m: metrics.NewWorker(o.Registerer), plans: plans, decoder: events.NewDecoder(o.Config, o.Limits),
		parts: make(map[topicPartition]*partState),
		cache: make(map[string]*entityState), dirty: make(map[dirtyTile]struct{}),
	}, nil
}

// Run consumes until ctx is canceled (returning nil) or a state or publish
// error makes progress unsafe (returning it; restart the worker to resume
// without loss).
func (w *Worker) Run(ctx context.Context) error {
	topics := make([]string, 0, len(w.plans))
	for t := range w.plans {
		topics = append(topics, t)
	}
	opts := append(kafka.BaseOpts(w.o.Brokers, w.o.ClientID, w.log),
		kgo.ConsumerGroup(w.o.Config.Kafka.Group),
		kgo.ConsumeTopics(topics...),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AdjustFetchOffsetsFn(w.adjustOffsets),
		kgo.OnPartitionsRevoked(w.onRevoked),
		kgo.OnPartitionsLost(w.onRevoked),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(16<<20),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.ProducerBatchMaxBytes(4<<20),
		kgo.MaxBufferedRecords(1_000_000),
		kgo.SessionTimeout(w.o.SessionTimeout),
	)
	if w.o.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(w.o.InstanceID))
	}
	opts = append(opts, w.o.ExtraOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("worker kafka client: %w", err)
	}
	w.cl = cl
	defer func() {
		// Poll blocks rebalances until allowed; leaving the group on Close
		// is a rebalance, so allow it first or Close waits forever.
		cl.AllowRebalance()
		cl.Close()
	}()
	if err := kafka.EnsureTopics(ctx, cl, w.o.Config); err != nil && ctx.Err() == nil {
		return err
	}
	w.log.Info("worker started", zap.Strings("topics", topics), zap.String("group", w.o.Config.Kafka.Group))
	lastHint := time.Now()
	for {
		fetches := cl.PollRecords(ctx, w.o.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) {
				return nil
			}
			w.m.Errors.WithLabelValues("fetch").Inc()
			w.log.Warn("fetch error", zap.String("topic", fe.Topic), zap.Int32("partition", fe.Partition), zap.Error(fe.Err))
		}
		var perr error
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if perr == nil && len(p.Records) > 0 {
				perr = w.processPartition(ctx, p)
			}
		})
		if perr == nil {
			perr = w.flushPublished(ctx)
		}
		if perr != nil {
			cl.AllowRebalance()
			if ctx.Err() != nil {
				return nil
			}
			return perr
		}
		if time.Since(lastHint) > time.Second {
			// The group offset is only a hint for lag monitoring; truth is in Pebble.
			cl.CommitUncommittedOffsets(ctx)
			lastHint = time.Now()
		}
		cl.AllowRebalance()
	}
}

// adjustOffsets runs when partitions are assigned: it replaces the group's
// committed offsets by the ones in Pebble.
func (w *Worker) adjustOffsets(_ context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for topic, parts := range assigned {
		plan := w.plans[topic]
		for p := range parts {
			ps, start, err := w.loadPartition(plan, topicPartition{topic, p})
			if err != nil {
				w.log.Error("read partition offsets", zap.Error(err))
				return nil, err
			}
			w.parts[ps.tp] = ps
			parts[p] = start
			w.log.Info("partition assigned", zap.String("topic", topic), zap.Int32("partition", p),
				zap.Int64("applied_through", ps.applyFrom), zap.Int64("published_through", ps.published))
		}
	}
	w.m.Assigned.Set(float64(len(w.parts)))
	return assigned, nil
}

func (w *Worker) loadPartition(plan *events.Plan, tp topicPartition) (*partState, kgo.Offset, error) {
	ps := &partState{tp: tp, plan: plan}
	applied, hasApplied, err := w.o.Store.GetOffset(keys.Offset(tp.topic, tp.partition))
	if err != nil {
		return nil, kgo.Offset{}, err
	}
	published, hasPublished, err := w.o.Store.GetOffset(keys.Published(tp.topic, tp.partition))
	if err != nil {
		return nil, kgo.Offset{}, err
	}
	ps.applyFrom = applied
	switch {
	case !hasApplied:
		// Never seen: replay everything retained.
		return ps, kgo.NewOffset().AtStart(), nil
	case hasPublished && published >= applied:
		ps.next, ps.published = applied, applied
		return ps, kgo.NewOffset().At(applied).WithEpoch(-1), nil
	case hasPublished:
		ps.next, ps.published = published, published
		return ps, kgo.NewOffset().At(published).WithEpoch(-1), nil
	default:
		// Applied but publication state unknown: republish from the start.
		return ps, kgo.NewOffset().AtStart(), nil
	}
}

func (w *Worker) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	w.mu.Lock()
	for topic, parts := range revoked {
		for _, p := range parts {
			delete(w.parts, topicPartition{topic, p})
			w.m.ConsumerLag.DeleteLabelValues(topic, strconv.Itoa(int(p)))
		}
	}
	w.m.Assigned.Set(float64(len(w.parts)))
	w.mu.Unlock()
	if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
		w.log.Debug("commit offset hint on revoke", zap.Error(err))
	}
	w.log.Info("partitions revoked", zap.Any("partitions", revoked))
}

func (w *Worker) partition(topic string, p int32) *partState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.parts[topicPartition{topic, p}]
}

// processPartition applies one fetched batch of one partition and commits it.
func (w *Worker) processPartition(ctx context.Context, fp kgo.FetchTopicPartition) error {
	ps := w.partition(fp.Topic, fp.Partition)
	if ps == nil {
		return nil // revoked while fetched; the new owner replays it
	}
	plan := ps.plan
	now := w.o.Now().UnixMilli()
	clear(w.cache)
	clear(w.dirty)
	var dead []*kgo.Record
	applied := 0
	start := ps.next
	for _, r := range fp.Records {
		if r.Offset < ps.next {
			continue
		}
		ps.next = r.Offset + 1
		replay := r.Offset < ps.applyFrom
		if rej := w.decoder.Decode(plan, r.Key, r.Value, now, &w.dec); rej != nil {
			if !replay {
				dead = append(dead, w.deadLetter(plan, r, rej))
			}
			continue
		}
		es, err := w.entity(plan, ps, w.dec.Key)
		if err != nil {
			return err
		}
		for i := range plan.Features {
			f := &plan.Features[i]
			if replay {
				w.dirty[dirtyTile{es, i, f.Window.TileStart(w.dec.TS)}] = struct{}{}
				if f.Window.Lifetime() {
					w.dirty[dirtyTile{es, i, aggregations.BaseStart}] = struct{}{}
				}
				continue
			}
			tile, ok := es.series[i].Apply(f.Window, aggregations.Event{TS: w.dec.TS, Seq: r.Offset, Value: f.Value(&w.dec)}, now)
			if !ok {
				w.m.DroppedLate.WithLabelValues(f.ID).Inc()
				continue
			}
			es.modified = true
			w.dirty[dirtyTile{es, i, tile}] = struct{}{}
		}
		if !replay {
			applied++
		}
	}
	if ps.next == start {
		return nil
	}
	// Dead letters first: once the offset is committed they must be safe.
	if len(dead) > 0 {
		if err := w.cl.ProduceSync(ctx, dead...).FirstErr(); err != nil {
			w.m.Errors.WithLabelValues("dead_letter").Inc()
			return fmt.Errorf("produce %d dead letters of %s/%d: %w", len(dead), fp.Topic, fp.Partition, err)
		}
		for _, d := range dead {
			w.m.DeadLetters.WithLabelValues(plan.Source.Name, headerValue(d, HeaderReason)).Inc()
		}
	}
	var removed []int64
	b := w.o.Store.NewBatch()
	for _, es := range w.cache {
		for i := range plan.Features {
			var baseChanged bool
			removed, baseChanged = es.series[i].Expire(plan.Features[i].Window, now, removed[:0])
			for _, s := range removed {
				w.dirty[dirtyTile{es, i, s}] = struct{}{}
				es.modified = true
			}
			if baseChanged {
				w.dirty[dirtyTile{es, i, aggregations.BaseStart}] = struct{}{}
				es.modified = true
			}
		}
		if !es.modified {
			continue
		}
		w.keyBuf = keys.State(w.keyBuf[:0], fp.Topic, fp.Partition, es.key)
		w.valBuf = encodeEntity(w.valBuf[:0], plan, es)
		if err := b.Set(w.keyBuf, w.valBuf, nil); err != nil {
			b.Close()
			return fmt.Errorf("stage state of %s/%d: %w", fp.Topic, fp.Partition, err)
		}
	}
	if ps.next > ps.applyFrom {
		if err := b.Set(keys.Offset(fp.Topic, fp.Partition), keys.PutU64(ps.next), nil); err != nil {
			b.Close()
			return fmt.Errorf("stage offset of %s/%d: %w", fp.Topic, fp.Partition, err)
		}
		ps.applyFrom = ps.next
	}
	t0 := time.Now()
	if err := w.o.Store.Commit(b); err != nil {
		w.m.Errors.WithLabelValues("commit").Inc()
		return fmt.Errorf("commit %s/%d through offset %d: %w", fp.Topic, fp.Partition, ps.next, err)
	}
	w.m.BatchCommit.Observe(time.Since(t0).Seconds())
	w.m.BatchEvents.Observe(float64(applied))
	w.m.EventsIn.WithLabelValues(plan.Source.Name).Add(float64(applied))
	if fp.HighWatermark >= 0 {
		w.m.ConsumerLag.WithLabelValues(fp.Topic, strconv.Itoa(int(fp.Partition))).Set(float64(fp.HighWatermark - ps.next))
	}
	w.publish(plan)
	w.touched = append(w.touched, ps)
	return nil
}

// entity returns the batch-cached state of key, loading it from Pebble.
func (w *Worker) entity(plan *events.Plan, ps *partState, key string) (*entityState, error) {
	if es, ok := w.cache[key]; ok {
		return es, nil
	}
	es := &entityState{key: key}
	w.keyBuf = keys.State(w.keyBuf[:0], ps.tp.topic, ps.tp.partition, key)
	val, found, err := w.o.Store.Get(w.valBuf[:0], w.keyBuf)
	if err != nil {
		return nil, fmt.Errorf("load state of %q in %s/%d: %w", key, ps.tp.topic, ps.tp.partition, err)
	}
	w.valBuf = val
	if found {
		if err := decodeEntity(val, plan, es); err != nil {
			return nil, fmt.Errorf("%s/%d: %w", ps.tp.topic, ps.tp.partition, err)
		}
	} else {
		es.series = make([]aggregations.Series, len(plan.Features))
	}
	w.cache[key] = es
	return es, nil
}

// publish produces the current value (or a tombstone) of every dirty tile.
// Asynchronous; flushPublished waits for the acknowledgements.
func (w *Worker) publish(plan *events.Plan) {
	topic := w.o.Config.Kafka.FeatureLogTopic
	for d := range w.dirty {
		f := &plan.Features[d.feature]
		r := &kgo.Record{Topic: topic, Key: keys.AppendFeatureLog(nil, keys.TileRef{
			Entity: plan.Entity, EntityKey: d.es.key, FeatureID: f.ID, Start: d.start})}
		if t, ok := d.es.series[d.feature].Tile(d.start); ok {
			r.Value = aggregations.AppendTile(nil, t)
		}
		w.cl.Produce(context.Background(), r, w.onPublished)
	}
	w.m.TilesPublished.Add(float64(len(w.dirty)))
}

func (w *Worker) onPublished(_ *kgo.Record, err error) {
	if err != nil {
		w.m.Errors.WithLabelValues("publish").Inc()
		w.pubErr.CompareAndSwap(nil, &err)
	}
}

// flushPublished waits until every tile produced so far is acknowledged, then
// records per touched partition that publication is complete through its
// next offset.
func (w *Worker) flushPublished(ctx context.Context) error {
	if len(w.touched) == 0 {
		return nil
	}
	if err := w.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush feature log: %w", err)
	}
	if perr := w.pubErr.Load(); perr != nil {
		// Not recorded as published: a restart republishes these tiles.
		return fmt.Errorf("publish to feature log %s: %w", w.o.Config.Kafka.FeatureLogTopic, *perr)
	}
	b := w.o.Store.NewBatch()
	for _, ps := range w.touched {
		ps.published = ps.next
		if err := b.Set(keys.Published(ps.tp.topic, ps.tp.partition), keys.PutU64(ps.next), nil); err != nil {
			b.Close()
			return fmt.Errorf("stage published offset: %w", err)
		}
	}
	w.touched = w.touched[:0]
	// Losing this write only causes a harmless republish.
	return w.o.Store.CommitNoSync(b)
}

// Metrics returns the worker's metrics (for tests and embedding programs).
func (w *Worker) Metrics() *metrics.Worker { return w.m }
