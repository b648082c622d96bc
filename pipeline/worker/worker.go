// Package worker is featurepipe's stream worker. Workers form one Kafka
// consumer group over the source topics; per assigned partition a worker
// decodes records, routes them by entity, updates the tiles of every feature
// the source feeds, and commits the state together with the partition's next
// offset in ONE Pebble batch. Only after that commit does it publish the
// changed tiles to the compacted feature log.
//
// Exactly-once effect: the offset to resume from is read from Pebble on every
// (re)assignment, never from the group's committed offset (which is the
// partition's published mark, see publishedmark.go), so a record contributes
// to state exactly once
// across kill -9, restarts and rebalances. A partition new to this worker's
// store is restored from the newest usable snapshot when Options.Snapshots
// is set and one exists (then replayed from the offset the snapshot covers),
// otherwise replayed from the earliest retained offset.
//
// Publication is at-least-once and idempotent: feature-log records carry the
// latest value of a tile, keyed by (entity, feature version, source
// partition, tile): the worker of each partition owns its own tiles of an
// entity, which lookups merge when producers put an entity's events in
// several partitions (see canonical.go for how those are counted). Changed
// tiles are collected and published deduplicated, from a cache of the
// entities touched since the last publication: as soon as a poll is
// applied when the stream is light (the poll caught up with its
// partitions), else after PublishInterval (see Worker.publishTrigger). The store keeps, per
// partition, the source offset through which publication was flushed; on
// assignment the worker re-reads records between that offset and the applied
// offset without applying them, and republishes the current value of every
// tile they touch. A crash between commit and publish thus loses nothing.
// Partitions revoked in a rebalance are published and flushed in the revoke
// callback, before this worker rejoins the group and so before their next
// owner starts: no tile of a partition reaches the feature log from a
// worker that no longer owns it, where an older value could win. And a new
// owner whose store is older than the feature log publishes nothing until
// it has caught up with the published mark its predecessor committed.
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/internal/schemaregistry"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// DefaultMaxCachedEntities is Options.MaxCachedEntities' default (and the
// featurepipe worker --max-cached-entities flag's). With 200,000 entities
// (BenchmarkScaling, 2026-12-01) a bound of 50,000 cost no measurably
// more CPU per event than the former 200,000, and ~400 MiB less peak RSS.
const DefaultMaxCachedEntities = 50_000

// Options configure a Worker. Brokers, Config and Store are required.
type Options struct {
	// Brokers are the seed brokers; every client connects with
	// Config.Kafka.Security (TLS, SASL; kafka.ConnOf).
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
	// MaxPollRecords sizes one batch (one Pebble commit and its fsync):
	// a poll takes this many records, or in a backlog records for about
	// this many entities: up to maxPollGrowth (5) times as many records
	// when the last full poll's batch had several per entity and the
	// entity caches have room for them (see Worker.pollSize). In a backlog
	// of a few busy entities, such as a replay of history, a poll then
	// spans several partitions, applied in parallel. Default 20,000.
	MaxPollRecords int
	// PublishInterval is the longest time changed tiles are collected
	// before they are published to the feature log, deduplicated: the
	// batching time under load, and the added freshness latency then. On a
	// light stream the worker publishes sooner (adaptive publication, see
	// Worker.Run): as soon as a poll that caught up with its partitions is
	// applied. Default 200ms. Also the longest lifetime of the entity
	// cache.
	PublishInterval time.Duration
	// FixedPublishInterval turns adaptive publication off: changes wait
	// for PublishInterval (or a full entity cache) even on a light stream,
	// as before adaptive publication (tests keep tiles pending with it).
	// Default false: adaptive.
	FixedPublishInterval bool
	// StatusInterval is how often the worker records in the registry, per
	// owned partition and feature version, that it is alive and whether the
	// version is ready or warming up: the freshness `featurepipe features`
	// shows. Default 10s.
	StatusInterval time.Duration
	// Snapshots, when set, receives a snapshot of the owned partitions'
	// state every SnapshotEvery and on RequestSnapshot. Default nil: none.
	Snapshots *snapshot.Store
	// SnapshotEvery is the snapshot period. Default 10m.
	SnapshotEvery time.Duration
	// MaxCachedEntities publishes early when this many entities were
	// touched since the last publication, bounding memory. Default
	// DefaultMaxCachedEntities (50,000). Entities of earlier intervals are
	// kept too, up to this many over all partitions, the least recently
	// touched dropped first (so that an entity touched interval after
	// interval, as in a replay of history or a busy stream published every
	// poll, is decoded from Pebble once): memory is up to twice this many
	// decoded entities, a few KiB each (BenchmarkScaling, 200,000
	// entities of 7 features: ~2 KiB of live heap each, peak RSS +1.2 GiB
	// with a bound of 50,000 against +1.6 GiB with 200,000). An entity no
	// longer kept is read from Pebble again when touched (a point read,
	// usually from the block cache).
	MaxCachedEntities int
	// Limits bound what a valid event is (future event times, key size);
	// invalid events go to the dead-letter topic. Defaults: events.Limits.
	Limits events.Limits
	// SchemaRegistry resolves the writer schema ids of sources with
	// encoding confluent. Default: a client made from the feature file's
	// kafka.schema_registry (10s per request, transient failures retried
	// for 30s). A record whose schema cannot be fetched is never
	// dead-lettered: Run returns the error without committing its batch.
	SchemaRegistry *schemaregistry.Client
	// ClientID names this worker in Kafka. Default "featurepipe-worker".
	ClientID string
	// Actor is who runs this worker: the catalog records new feature
	// versions as registered by "Actor via ClientID[/InstanceID]"
	// (featurepipe history). Default: the OS user (registry.OSUser).
	Actor string
	// InstanceID, when set, makes this worker a static group member
	// (KIP-345): a restart with the same id within SessionTimeout takes its
	// partitions back without a rebalance. Default "": dynamic membership.
	InstanceID string
	// SessionTimeout is how long the group waits for a silent worker (one
	// killed with kill -9) before giving its partitions to others.
	// Default 10s; the broker bounds it (Kafka's minimum is 6s).
	SessionTimeout time.Duration
	// RebalanceTimeout is how long the group waits, once a rebalance has
	// begun, for every member to rejoin; a member that does not (one killed
	// mid-rebalance) is dropped after it. The group is cooperative
	// (franz-go's cooperative-sticky balancer): members keep processing the
	// partitions they keep while it rebalances, so this bounds only how long
	// moving partitions wait. It must exceed the longest poll-loop step
	// (one poll's apply, commit and publication, or a revoke's publication;
	// snapshot I/O runs in the background), or a busy worker is dropped and
	// rejoins. Default 10s (franz-go's is 60s).
	RebalanceTimeout time.Duration
	// StallAfter is how long one poll-loop step or one rebalance callback
	// may run before Healthy reports the worker stuck (a liveness probe
	// then restarts it, which loses nothing: state is in Pebble). Waiting
	// for records is not a step. Default 3 × RebalanceTimeout.
	StallAfter time.Duration
	// Stats, when set, observes the feature values this worker publishes:
	// at each publication, the value as of now of every (entity, feature
	// version) with a changed tile, sampled as its options say, for rolling
	// statistics and drift against baselines (see monitor.Live). Default
	// nil: none, at no cost.
	Stats *monitor.Live
	// ExtraOpts are appended to the franz-go options of the group client,
	// after the worker's own, so they override them. Default none.
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
	pub     *publisher // the feature log's writer
	// fatal is an error met in a rebalance callback that makes going on
	// unsafe; Run returns it at its next step.
	fatal atomic.Pointer[error]
	wake  atomic.Pointer[context.CancelFunc] // ends the running poll
	// stepStart and callbackStart are when the running poll-loop step and
	// rebalance callback began (unix ns; 0: none runs): see Healthy.
	stepStart     atomic.Int64
	callbackStart atomic.Int64

	mu    sync.Mutex
	parts map[topicPartition]*partState
	// Restores from snapshots run in the background (see startRestore):
	// in flight by partition, and finished ones waiting for the poll
	// goroutine. Guarded by mu.
	restoring   map[topicPartition]bool
	restoreDone []restoreResult
	restoreWG   sync.WaitGroup
	bgCtx       context.Context // background work (snapshots, restores) stops with Run

	bootChanged atomic.Bool // owned bootstraps changed: restart bootRd
	bootRd      *bootReader // reads history for bootstrapping partitions (poll goroutine only)

	snapNow      chan struct{}
	lastSnap     atomic.Pointer[snapshot.Manifest]
	lastSnapTime time.Time      // poll goroutine only
	snapWriting  atomic.Bool    // the background snapshot writer runs
	snapWG       sync.WaitGroup // the background snapshot writer

	// Metric children resolved once, not per event: per source topic.
	planMetrics map[string]*planMetrics
	// offCanonLogs rate-limit the log line about off-canonical records, per
	// source (poll goroutine only).
	offCanonLogs map[string]*offCanonicalLog
	// partCounts are the source topics' partition counts (w.mu held).
	partCounts map[string]partitionCounted

	commits markCommits // the published marks' commits (publishedmark.go)

	// Only the poll goroutine touches these.
	lastStatus time.Time
	enc        stateEncoder // apply's
	dead       []*kgo.Record
	repart     []*kgo.Record
	// pollN is the size the last poll asked for (pollSize). lastRecords
	// and lastModified are the events applied and the entities modified
	// by the last batch of a full poll, over sources with features of
	// their own: how many records bring one entity in a backlog (0 after
	// any poll that was not full or committed nothing).
	pollN                     int
	lastRecords, lastModified int
	// applying is how many partitions the current poll applies at once
	// (Worker.apply; prefetch divides its goroutines by it).
	applying int
}

type topicPartition struct {
	topic     string
	partition int32
}

// planMetrics are the metric children of one source's plan.
type planMetrics struct {
	eventsIn     prometheus.Counter
	offCanonical prometheus.Counter
	droppedLate  []prometheus.Counter // per feature, in plan order
	duplicates   prometheus.Counter   // repartition records skipped as duplicates
	// singleLoads and prefetchLoads are the entity-loads metric's children
	// (shared by every source: the metric has no source label).
	singleLoads, prefetchLoads prometheus.Counter
}

func newPlanMetrics(m *metrics.Worker, plan *events.Plan) *planMetrics {
	// A repartition topic's records count under their own label: they are
	// the source's events a second time.
	label := plan.Source.Name
	if plan.Repartition != nil {
		label = plan.Topic
	}
	pm := &planMetrics{eventsIn: m.EventsIn.WithLabelValues(label),
		offCanonical:  m.OffCanonical.WithLabelValues(label),
		duplicates:    m.RepartitionDuplicates.WithLabelValues(plan.Topic),
		singleLoads:   m.EntityLoads.WithLabelValues("single"),
		prefetchLoads: m.EntityLoads.WithLabelValues("prefetch")}
	for i := range plan.Features {
		pm.droppedLate = append(pm.droppedLate, m.DroppedLate.WithLabelValues(plan.Features[i].ID))
	}
	return pm
}

// partState tracks one owned partition.
type partState struct {
	tp      topicPartition
	plan    *events.Plan
	metrics *planMetrics
	lag     prometheus.Gauge // resolved at the partition's first batch
	// applyFrom: records below it are already in state; they are re-read
	// only to republish the tiles they touched.
	applyFrom int64
	next      int64 // next offset to process
	published int64 // offset through which publication is flushed

	// quietUntil is the partition's published mark when it was assigned
	// (see publishedmark.go): records below it change state but mark no
	// tile to publish (quiet is set while one is applied), and expiry
	// waits until the state has reached it. mark is the mark to commit:
	// max(published, quietUntil), set when publication is flushed and
	// read by the commit goroutine.
	quietUntil int64
	quiet      bool
	mark       atomic.Int64

	// Since the last publication: the entities touched (decoded, as in
	// Pebble), and the tiles changed or to be republished, each with the
	// newest Kafka timestamp (ms) of a source record folded into it since
	// then (0: none; see markDirty), which its feature-log record carries.
	cache map[string]*entityState
	// kept are the entities earlier publication intervals touched (their
	// caches, handed over by publisher.dropLocked), as committed to
	// Pebble: an entity touched again is taken from here instead of being
	// read and decoded again (Worker.entity). Bounded over all partitions
	// by MaxCachedEntities, the least recently touched going first
	// (publisher.evictKeptLocked).
	kept  map[string]*entityState
	dirty map[dirtyTile]int64
	// cacheBusiest and dirtyBusiest are the most entries cache and dirty
	// held at a publication since they were allocated (see emptied).
	cacheBusiest, dirtyBusiest int
	ords                       uint64 // the last entityState.ord given
	pending                    bool   // in publisher.pending
	staged                     int64  // next offset once the staged batch commits
	applied                    int    // events applied in the staged batch
	modified                   []*entityState

	// Scratch of applyPartition, which runs for different partitions in
	// parallel: each partition owns its own.
	dec     events.Event
	recTS   int64       // the Kafka timestamp (ms) of the record being applied; 0 for history and expiry
	scratch loadScratch // entity's
	dead    []*kgo.Record
	repart  []*kgo.Record // re-keyed copies of the staged batch's records

	// singleLoads and prefetchLoads count the entities loaded from Pebble
	// since the partition's last commit (by entity, by prefetch), touches
	// the records applyPartition passed to entity; skipPrefetch is set
	// when the next batch does not prefetch (not prefetchNext at the
	// commit; a partition's first batch does).
	singleLoads, prefetchLoads, touches int
	skipPrefetch                        bool

	// marks are a repartition partition's high-water marks (nil for a
	// source partition): see repartition.go.
	marks *marks
	// rekeyHist are the histories still to re-key to new repartition
	// topics (repartition.go).
	rekeyHist []*rekeyHistory

	boot      []*bootFeature // new feature versions replaying history
	republish []int          // feature indices whose tiles must all be republished
	seenID    string         // the first-seen marker's feature id (see seen.go)

	canon canonical // counts records outside their key's canonical partition

	// newest is, per feature (plan order), the newest event time (ms)
	// applied to its state since this worker took the partition (0: none);
	// poll goroutine only. fresh is its value as of the last committed
	// batch, read by the freshness collector at scrape time.
	newest []int64
	fresh  []atomic.Int64

	// restoring: a background restore from a snapshot runs; the partition
	// is paused and none of its records are applied until finishRestores
	// replaces this state.
	restoring bool
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
	if o.PublishInterval <= 0 {
		o.PublishInterval = 200 * time.Millisecond
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = 10 * time.Second
	}
	if o.SnapshotEvery <= 0 {
		o.SnapshotEvery = 10 * time.Minute
	}
	if o.MaxCachedEntities <= 0 {
		o.MaxCachedEntities = DefaultMaxCachedEntities
	}
	if o.Actor == "" {
		o.Actor = registry.OSUser()
	}
	if o.ClientID == "" {
		o.ClientID = "featurepipe-worker"
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 10 * time.Second
	}
	if o.RebalanceTimeout <= 0 {
		o.RebalanceTimeout = 10 * time.Second
	}
	if o.StallAfter <= 0 {
		o.StallAfter = 3 * o.RebalanceTimeout
	}
	plans, err := events.Plans(o.Config)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		o: o, log: o.Log, m: metrics.NewWorker(o.Registerer), plans: plans, decoder: events.NewDecoderWith(o.Config, o.Limits, o.SchemaRegistry),
		parts: make(map[topicPartition]*partState), restoring: map[topicPartition]bool{}, bgCtx: context.Background(),
		snapNow: make(chan struct{}, 1), lastSnapTime: time.Now(),
		planMetrics: make(map[string]*planMetrics, len(plans)), offCanonLogs: map[string]*offCanonicalLog{},
		partCounts: map[string]partitionCounted{},
	}
	for topic, plan := range plans {
		w.planMetrics[topic] = newPlanMetrics(w.m, plan)
	}
	w.pub = newPublisher(o, w.m)
	metrics.NewFreshness(o.Registerer, o.Now, w.newestEvents)
	return w, nil
}

// name identifies this worker in the registry and in snapshot manifests:
// ClientID, then "/" and InstanceID for a static member.
func (w *Worker) name() string {
	if w.o.InstanceID != "" {
		return w.o.ClientID + "/" + w.o.InstanceID
	}
	return w.o.ClientID
}

// Run consumes until ctx is canceled (returning nil) or a state or publish
// error makes progress unsafe (returning it; restart the worker to resume
// without loss).
func (w *Worker) Run(ctx context.Context) error {
	topics := make([]string, 0, len(w.plans))
	for t := range w.plans {
		topics = append(topics, t)
	}
	opts, err := kafka.BaseOpts(kafka.ConnOf(w.o.Brokers, w.o.Config), w.o.ClientID, w.log)
	if err != nil {
		return fmt.Errorf("worker kafka client: %w", err)
	}
	opts = append(opts,
		kgo.ConsumerGroup(w.o.Config.Kafka.Group),
		kgo.ConsumeTopics(topics...),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Records of aborted transactions in a source topic never happened:
		// read only committed ones (franz-go's default reads uncommitted).
		// An open transaction holds its partition back until it ends.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Cooperative (KIP-429): a rebalance revokes only the partitions
		// that move, so the others keep being processed while the group
		// waits for a slow or dead member. This is franz-go's default,
		// stated here because the revoke callback relies on it: it gets
		// only the moving partitions.
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.RebalanceTimeout(w.o.RebalanceTimeout),
		kgo.AdjustFetchOffsetsFn(w.adjustOffsets),
		kgo.OnPartitionsRevoked(w.onRevoked),
		kgo.OnPartitionsLost(w.onLost),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(16<<20),
		kgo.ProducerLinger(5*time.Millisecond),
		// Batches stay at franz-go's default bound (1,000,012 bytes before
		// compression), under Kafka's default max.message.bytes (1 MiB)
		// that the broker checks after compression: a larger bound (4 MiB
		// here before) let a slow broker's backlog fill batches it refused
		// with MESSAGE_TOO_LARGE, stopping the worker.
		kgo.MaxBufferedRecords(2_000_000),
		kgo.SessionTimeout(w.o.SessionTimeout),
		// Kafka's guidance: at most a third of the session timeout. A
		// member learns of a rebalance at its next heartbeat, and must
		// rejoin within the rebalance timeout of its start.
		kgo.HeartbeatInterval(min(3*time.Second, w.o.SessionTimeout/3)),
	)
	if w.o.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(w.o.InstanceID))
	}
	opts = append(opts, w.o.ExtraOpts...)
	// The background snapshot writer and restores stop with Run.
	snapCtx, stopSnap := context.WithCancel(ctx)
	// The group callbacks (adjustOffsets) use w.cl and w.bgCtx under w.mu:
	// holding it here makes them wait until both are set.
	w.mu.Lock()
	w.bgCtx = snapCtx
	cl, err := kgo.NewClient(opts...)
	w.cl = cl
	w.pub.cl = cl
	w.mu.Unlock()
	if err != nil {
		stopSnap()
		return fmt.Errorf("worker kafka client: %w", err)
	}
	defer func() {
		w.stopCommits()
		stopSnap()
		w.snapWG.Wait()
		w.restoreWG.Wait()
		// Poll blocks rebalances until allowed; leaving the group on Close
		// is a rebalance, so allow it first or Close waits forever.
		cl.AllowRebalance()
		cl.Close()
	}()
	if err := kafka.EnsureTopics(ctx, cl, w.o.Config); err != nil && ctx.Err() == nil {
		return err
	}
	if err := w.register(ctx); err != nil {
		return err
	}
	defer func() {
		if w.bootRd != nil {
			w.bootRd.stop()
		}
	}()
	w.log.Info("worker started", zap.Strings("topics", topics), zap.String("group", w.o.Config.Kafka.Group))
	w.pub.start()
	lastHint := time.Now()
	for {
		w.stepStart.Store(0)
		fetches := w.poll(ctx)
		w.stepStart.Store(time.Now().UnixNano())
		if perr := w.fatal.Load(); perr != nil {
			return *perr
		}
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return w.shutdown()
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) {
				return w.shutdown()
			}
			if errors.Is(fe.Err, context.DeadlineExceeded) {
				continue // the poll waited for the next publication only
			}
			w.m.Errors.WithLabelValues("fetch").Inc()
			w.log.Warn("fetch error", zap.String("topic", fe.Topic), zap.Int32("partition", fe.Partition), zap.Error(fe.Err))
		}
		err := w.finishRestores(ctx)
		if err == nil {
			err = w.refreshBootClient(ctx)
		}
		if err == nil {
			err = w.apply(ctx, fetches)
		}
		if err == nil {
			if trigger := w.publishTrigger(fetches); trigger != "" {
				err = w.pub.publish(ctx, trigger)
			}
		}
		if err == nil {
			err = w.finishBoots(ctx)
		}
		if err == nil && w.snapshotDue() {
			err = w.startSnapshot(ctx, snapCtx)
		}
		if err == nil && time.Since(w.lastStatus) >= w.o.StatusInterval {
			w.reportStatus(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return w.shutdown()
			}
			return err
		}
		if time.Since(lastHint) > time.Second {
			w.commitMarksPeriodically(ctx)
			lastHint = time.Now()
		}
		// Revoked partitions are published by onRevoked, which runs once
		// this allows it: no signal to catch here, and none to lose.
		cl.AllowRebalance()
	}
}

// publishTrigger returns why the pending changes must be published after
// this poll, or "" when they wait:
//
//   - "cache_full": MaxCachedEntities entities are cached;
//   - "interval": PublishInterval has passed since the last publication;
//   - "caught_up" (adaptive publication, unless FixedPublishInterval): the
//     stream is light, that is the poll just applied read every partition
//     it returned records of to the end its fetch saw (caughtUp; an empty
//     poll counts), and no bootstrap replays history. Waiting would then
//     buy no batching, only latency: nothing else is ready to apply. Under
//     load (a backlog: the poll stopped short of a partition's end, at
//     MaxPollRecords or the fetch size) changes wait for the interval as
//     before; while history replays for new feature versions they do too
//     (its tiles change over and over).
//
// Costs of caught_up: per publication one produce flush (a round trip to
// the feature log's leaders, during which the poll loop waits and records
// accumulate, so publications grow with the stream: the loop regulates
// itself) and one Pebble batch without fsync (the published offsets);
// less deduplication of a tile changed in successive polls, so more
// feature-log records per event on a busy stream of few entities.
func (w *Worker) publishTrigger(fetches kgo.Fetches) string {
	// With nothing pending, "interval" still restarts the interval (a
	// publication of nothing): a change after an idle spell waits for the
	// interval as before when adaptive publication is off.
	switch full, intervalDue, pending := w.pub.dueState(); {
	case full:
		return "cache_full"
	case intervalDue:
		return "interval"
	case pending && !w.o.FixedPublishInterval && w.bootRd == nil && !w.bootChanged.Load() && caughtUp(fetches):
		return "caught_up"
	}
	return ""
}

// caughtUp reports whether a poll read every partition it returned records
// of to the end its fetch saw: the high watermark, or the last stable
// offset when lower (an open transaction's records are not readable yet),
// within one offset (the commit marker that ends a transaction is never
// returned as a record). A poll without records is caught up. Cost: one
// pass over the poll's partitions.
func caughtUp(fetches kgo.Fetches) bool {
	ok := true
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if !ok || len(fp.Records) == 0 {
			return
		}
		end := fp.HighWatermark
		if fp.LastStableOffset >= 0 && fp.LastStableOffset < end {
			end = fp.LastStableOffset
		}
		next := fp.Records[len(fp.Records)-1].Offset + 1
		ok = end >= 0 && end-next <= 1
	})
	return ok
}

// idleWake bounds how long one poll waits for records: how soon a worker
// with an idle stream notices work its rebalance callbacks announced.
const idleWake = 250 * time.Millisecond

// poll waits for records, but while changes wait to be published no longer
// than until their publication is due, so that a quiet stream still gets
// its last changes published.
func (w *Worker) poll(ctx context.Context) kgo.Fetches {
	const forever = time.Duration(1<<63 - 1)
	// Never longer than idleWake: an assignment callback runs while this
	// poll waits (BlockRebalanceOnPoll) and may mark bootstraps or
	// republishes after the wait was computed; on an idle stream nothing
	// else would end the poll to start them.
	wait := min(w.pub.untilDue(forever), idleWake)
	if w.bootRd != nil || w.bootChanged.Load() {
		wait = min(wait, 10*time.Millisecond) // history is read between live polls
	}
	if w.o.Snapshots != nil {
		wait = min(wait, time.Second) // notice snapshot requests and periods when idle
		w.mu.Lock()
		if len(w.restoring) > 0 || len(w.restoreDone) > 0 {
			wait = min(wait, 20*time.Millisecond) // resume restored partitions soon
		}
		w.mu.Unlock()
	}
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	// A rebalance callback that fails (w.fatal) wakes the poll.
	w.wake.Store(&cancel)
	defer w.wake.Store(nil)
	if w.fatal.Load() != nil {
		cancel()
	}
	w.pollN = w.pollSize()
	return w.cl.PollRecords(pctx, w.pollN)
}

// pollSize is how many records the next poll may take: enough for about
// MaxPollRecords entities, at the records per modified entity of the last
// batch if its poll was full (a backlog; MaxPollRecords records otherwise),
// at most maxPollGrowth × MaxPollRecords records, but no more than the
// entity caches' room (MaxCachedEntities less the entities cached since the
// last publication) allows, and never fewer than MaxPollRecords.
//
// Why: a poll takes buffered records partition by partition, each fetch
// bringing up to FetchMaxPartitionBytes of one, so in a backlog of a few
// busy entities (a replay of history) a poll of MaxPollRecords records holds
// one partition, whose apply runs on one core, where a larger one spans
// partitions applied in parallel, with fewer commits. Counting entities
// rather than records keeps what a batch holds (its entities' encoded
// states, and Pebble's memory for a batch that large) as before when every
// record brings a new entity; the room keeps the caches' bound: a record
// brings at most one new entity, so a poll takes the caches past
// MaxCachedEntities by no more than MaxPollRecords (plus, while new
// feature versions replay history, up to about MaxPollRecords entities that
// applyBoot loads, as before).
func (w *Worker) pollSize() int {
	n := w.o.MaxPollRecords
	if w.lastModified > 0 && w.lastRecords > w.lastModified {
		n = int(min(int64(n)*int64(w.lastRecords)/int64(w.lastModified), int64(maxPollGrowth)*int64(n)))
	}
	return max(w.o.MaxPollRecords, min(n, w.o.MaxCachedEntities-w.pub.cached()))
}

// maxPollGrowth bounds pollSize: at most this many times MaxPollRecords.
const maxPollGrowth = 5

// shutdown publishes what is committed but not yet published, so that a
// clean stop leaves nothing to republish, and commits the published marks
// (the revoke callback of the group leave that follows runs with a
// canceled context).
func (w *Worker) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.pub.publish(ctx, "shutdown"); err != nil {
		w.log.Warn("final publish; the next start republishes", zap.Error(err))
		return nil
	}
	w.commitMarksNow(ctx, w.publishedMarks())
	return nil
}

// Metrics returns the worker's metrics (for tests and embedding programs).
func (w *Worker) Metrics() *metrics.Worker { return w.m }
