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
// store is restored from the newest usable snapshot when Options.Snapshots
// is set and one exists (then replayed from the offset the snapshot covers),
// otherwise replayed from the earliest retained offset.
//
// Publication is at-least-once and idempotent: feature-log records carry the
// latest value of a tile, keyed by (entity, feature version, source
// partition, tile): the worker of each partition owns its own tiles of an
// entity, which lookups merge when producers put an entity's events in
// several partitions (see canonical.go for how those are counted). Changed
// tiles are collected for PublishInterval and published deduplicated, from a
// cache of the entities touched in that interval. The store keeps, per
// partition, the source offset through which publication was flushed; on
// assignment the worker re-reads records between that offset and the applied
// offset without applying them, and republishes the current value of every
// tile they touch. A crash between commit and publish thus loses nothing.
// Partitions revoked in a rebalance are published and flushed in the revoke
// callback, before this worker rejoins the group and so before their next
// owner starts: no tile of a partition reaches the feature log from a
// worker that no longer owns it, where an older value could win.
package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/registry"
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
	// amortize the Pebble commit and its fsync.
	MaxPollRecords int
	// PublishInterval is how long changed tiles are collected before they
	// are published to the feature log, deduplicated. Default 200ms: the
	// added feature freshness latency. Also the lifetime of the entity cache.
	PublishInterval time.Duration
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
	// touched since the last publication, bounding memory. Default 200,000.
	MaxCachedEntities int
	// Limits bound what a valid event is (future event times, key size);
	// invalid events go to the dead-letter topic. Defaults: events.Limits.
	Limits events.Limits
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
	pubErr  atomic.Pointer[error]
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

	bootChanged atomic.Bool // owned bootstraps changed: rebuild bootCl
	bootCl      *kgo.Client // reads history for bootstrapping partitions

	snapNow      chan struct{}
	lastSnap     atomic.Pointer[snapshot.Manifest]
	lastSnapTime time.Time      // poll goroutine only
	snapWriting  atomic.Bool    // the background snapshot writer runs
	snapWG       sync.WaitGroup // the background snapshot writer
	flMu         sync.Mutex
	flOffsets    map[int32]int64 // feature-log partition -> next offset acknowledged

	// Metric children resolved once, not per event: per source topic.
	planMetrics map[string]*planMetrics
	// offCanonLogs rate-limit the log line about off-canonical records, per
	// source (poll goroutine only).
	offCanonLogs map[string]*offCanonicalLog
	// partCounts are the source topics' partition counts (w.mu held).
	partCounts map[string]partitionCounted
	// published is w.onPublished bound once: a method value passed per
	// produced record would allocate a closure per tile.
	published func(*kgo.Record, error)

	// pubMu guards the publisher's state: the pending partitions, their
	// dirty tiles and entity caches, and lastPublish. The poll goroutine
	// holds it to publish; the revoke callback, which franz-go runs in its
	// group goroutine (gated by BlockRebalanceOnPoll so that it never runs
	// while a poll's records are processed, but possibly while the poll
	// goroutine waits for records), holds it to publish and drop the
	// revoked partitions.
	pubMu       sync.Mutex
	pending     []*partState // partitions with unpublished changes
	lastPublish time.Time

	// Only the poll goroutine touches these.
	lastStatus time.Time
	valBuf     []byte
	keyBuf     []byte
	dead       []*kgo.Record
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
}

func newPlanMetrics(m *metrics.Worker, plan *events.Plan) *planMetrics {
	pm := &planMetrics{eventsIn: m.EventsIn.WithLabelValues(plan.Source.Name),
		offCanonical: m.OffCanonical.WithLabelValues(plan.Source.Name)}
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

	// Since the last publication: the entities touched (decoded, as in
	// Pebble), and the tiles changed or to be republished.
	cache    map[string]*entityState
	dirty    map[dirtyTile]struct{}
	pending  bool  // in Worker.pending
	staged   int64 // next offset once the staged batch commits
	applied  int   // events applied in the staged batch
	modified []*entityState

	// Scratch of applyPartition, which runs for different partitions in
	// parallel: each partition owns its own.
	dec    events.Event
	keyBuf []byte
	valBuf []byte
	dead   []*kgo.Record

	boot      []*bootFeature // new feature versions replaying history
	republish []int          // feature indices whose tiles must all be republished
	seenID    string         // the first-seen marker's feature id (see seen.go)

	canon canonical // counts records outside their key's canonical partition

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
		o.MaxCachedEntities = 200_000
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
		o: o, log: o.Log, m: metrics.NewWorker(o.Registerer), plans: plans, decoder: events.NewDecoder(o.Config, o.Limits),
		parts: make(map[topicPartition]*partState), restoring: map[topicPartition]bool{}, bgCtx: context.Background(),
		snapNow: make(chan struct{}, 1), flOffsets: map[int32]int64{}, lastSnapTime: time.Now(),
		planMetrics: make(map[string]*planMetrics, len(plans)), offCanonLogs: map[string]*offCanonicalLog{},
		partCounts: map[string]partitionCounted{},
	}
	for topic, plan := range plans {
		w.planMetrics[topic] = newPlanMetrics(w.m, plan)
	}
	w.published = w.onPublished
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
	opts := append(kafka.BaseOpts(w.o.Brokers, w.o.ClientID, w.log),
		kgo.ConsumerGroup(w.o.Config.Kafka.Group),
		kgo.ConsumeTopics(topics...),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
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
		kgo.ProducerBatchMaxBytes(4<<20),
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
	w.mu.Unlock()
	if err != nil {
		stopSnap()
		return fmt.Errorf("worker kafka client: %w", err)
	}
	hintCtx, stopHints := context.WithCancel(ctx)
	var hints sync.WaitGroup
	var hinting atomic.Bool
	defer func() {
		stopHints()
		hints.Wait()
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
		if w.bootCl != nil {
			w.bootCl.Close()
		}
	}()
	w.log.Info("worker started", zap.Strings("topics", topics), zap.String("group", w.o.Config.Kafka.Group))
	w.pubMu.Lock()
	w.lastPublish = time.Now()
	w.pubMu.Unlock()
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
		if err == nil && w.publishDue() {
			err = w.publish(ctx)
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
				return nil
			}
			return err
		}
		if time.Since(lastHint) > time.Second && hinting.CompareAndSwap(false, true) {
			// The group offset is only a hint for lag monitoring; truth is
			// in Pebble. Committed from another goroutine: franz-go blocks
			// a commit while the group joins and syncs, which with a dead
			// member in the group lasts up to its session timeout, and
			// the partitions this worker keeps must not wait for that.
			hints.Add(1)
			go func() {
				defer hints.Done()
				defer hinting.Store(false)
				if err := cl.CommitUncommittedOffsets(hintCtx); err != nil && hintCtx.Err() == nil {
					w.log.Debug("commit offset hint", zap.Error(err))
				}
			}()
			lastHint = time.Now()
		}
		// Revoked partitions are published by onRevoked, which runs once
		// this allows it: no signal to catch here, and none to lose.
		cl.AllowRebalance()
	}
}

// publishDue reports whether the pending changes must be published now:
// PublishInterval has passed or the entity caches are full.
func (w *Worker) publishDue() bool {
	w.pubMu.Lock()
	defer w.pubMu.Unlock()
	return w.cachedEntities() >= w.o.MaxCachedEntities || time.Since(w.lastPublish) >= w.o.PublishInterval
}

// poll waits for records, but while changes wait to be published no longer
// than until their publication is due, so that a quiet stream still gets
// its last changes published.
func (w *Worker) poll(ctx context.Context) kgo.Fetches {
	const forever = time.Duration(1<<63 - 1)
	wait := forever
	w.pubMu.Lock()
	if len(w.pending) > 0 {
		wait = max(w.o.PublishInterval-time.Since(w.lastPublish), time.Millisecond)
	}
	w.pubMu.Unlock()
	if w.bootCl != nil || w.bootChanged.Load() {
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
	var pctx context.Context
	var cancel context.CancelFunc
	if wait == forever {
		pctx, cancel = context.WithCancel(ctx)
	} else {
		pctx, cancel = context.WithTimeout(ctx, wait)
	}
	defer cancel()
	// A rebalance callback that fails (w.fatal) wakes the poll.
	w.wake.Store(&cancel)
	defer w.wake.Store(nil)
	if w.fatal.Load() != nil {
		cancel()
	}
	return w.cl.PollRecords(pctx, w.o.MaxPollRecords)
}

// shutdown publishes what is committed but not yet published, so that a
// clean stop leaves nothing to republish.
func (w *Worker) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.publish(ctx); err != nil {
		w.log.Warn("final publish; the next start republishes", zap.Error(err))
	}
	return nil
}

// adjustOffsets runs when partitions are assigned: it replaces the group's
// committed offsets by the ones in Pebble.
func (w *Worker) adjustOffsets(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pause, resume := map[string][]int32{}, map[string][]int32{}
	for topic, parts := range assigned {
		plan := w.plans[topic]
		for p := range parts {
			ps, start, err := w.loadPartition(ctx, plan, topicPartition{topic, p}, true)
			if err != nil {
				w.log.Error("read partition offsets", zap.Error(err))
				return nil, err
			}
			w.parts[ps.tp] = ps
			parts[p] = start
			if ps.restoring {
				pause[topic] = append(pause[topic], p)
				w.log.Info("partition assigned; restoring it from a snapshot", zap.String("topic", topic), zap.Int32("partition", p))
				continue
			}
			// Paused if it was restoring when last revoked.
			resume[topic] = append(resume[topic], p)
			w.log.Info("partition assigned", zap.String("topic", topic), zap.Int32("partition", p),
				zap.Int64("applied_through", ps.applyFrom), zap.Int64("published_through", ps.published))
		}
	}
	if len(pause) > 0 {
		w.cl.PauseFetchPartitions(pause)
	}
	if len(resume) > 0 {
		w.cl.ResumeFetchPartitions(resume)
	}
	w.m.Assigned.Set(float64(len(w.parts)))
	return assigned, nil
}

// loadPartition reads a newly assigned partition's offsets and feature
// versions from Pebble and returns its state and the offset to fetch from.
// A partition with no state here, when tryRestore is set and snapshots are
// configured, is returned restoring (ps.restoring): a background restore is
// started (startRestore), and the caller pauses it until finishRestores
// loads it again. w.mu held.
func (w *Worker) loadPartition(ctx context.Context, plan *events.Plan, tp topicPartition, tryRestore bool) (*partState, kgo.Offset, error) {
	ps := &partState{tp: tp, plan: plan, metrics: w.planMetrics[tp.topic], cache: map[string]*entityState{}, dirty: map[dirtyTile]struct{}{}, seenID: seenID(plan)}
	if n, err := w.partitionCount(ctx, tp.topic); err != nil {
		w.log.Warn("records outside their canonical partition are not counted for this partition", zap.Error(err))
	} else {
		ps.canon = newCanonical(n)
	}
	applied, hasApplied, err := w.o.Store.GetOffset(keys.Offset(tp.topic, tp.partition))
	if err != nil {
		return nil, kgo.Offset{}, err
	}
	published, hasPublished, err := w.o.Store.GetOffset(keys.Published(tp.topic, tp.partition))
	if err != nil {
		return nil, kgo.Offset{}, err
	}
	if !hasApplied && w.o.Snapshots != nil && tryRestore {
		// New to this worker: start from the newest snapshot of the
		// partition, if any, instead of the earliest retained offset, so
		// that history older than the topic's retention is not lost.
		ps.restoring = true
		w.startRestore(plan, tp)
		return ps, kgo.NewOffset().AtStart(), nil
	}
	ps.applyFrom = applied
	if err := w.loadFeatures(ps, applied, hasApplied); err != nil {
		return nil, kgo.Offset{}, err
	}
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

// onRevoked hands revoked partitions over: it publishes and flushes their
// unpublished tiles (and records them as published), so that nothing this
// worker computed for them reaches the feature log after the next owner
// starts, then forgets them. franz-go calls it before this member rejoins,
// so before the next owner is assigned them; with BlockRebalanceOnPoll never
// while a poll's records are processed. Cooperative rebalancing passes only
// the partitions that move. A failed publication makes Run return its error
// (restart the worker: the published offset was not recorded, so a later
// owner from this store republishes).
func (w *Worker) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	w.forget(ctx, revoked, true)
	if len(revoked) == 0 {
		return
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
		w.log.Debug("commit offset hint on revoke", zap.Error(err))
	}
	w.log.Info("partitions revoked", zap.Any("partitions", revoked))
}

// onLost forgets partitions lost without a hand-over (this member was
// dropped from the group: another may own them already). Their unpublished
// tiles are dropped, not published: a late publication could overwrite the
// new owner's newer values. The new owner computes them from its own
// offsets; this store's published offset stays behind its applied offset,
// so if the partitions come back here they are republished.
func (w *Worker) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	w.forget(ctx, lost, false)
	if len(lost) > 0 {
		w.log.Warn("partitions lost", zap.Any("partitions", lost))
	}
}

// forget removes partitions from the publisher (publishing their pending
// tiles first when publish is set) and from the owned set.
func (w *Worker) forget(ctx context.Context, parts map[string][]int32, publish bool) {
	w.callbackStart.Store(time.Now().UnixNano())
	defer w.callbackStart.Store(0)
	gone := make(map[topicPartition]bool)
	for topic, ps := range parts {
		for _, p := range ps {
			gone[topicPartition{topic, p}] = true
		}
	}
	if len(gone) == 0 {
		return
	}
	sel := func(ps *partState) bool { return gone[ps.tp] }
	w.pubMu.Lock()
	if publish {
		// Bounded: the group waits for this callback at most the
		// rebalance timeout.
		pctx, cancel := context.WithTimeout(ctx, w.o.RebalanceTimeout)
		if err := w.publishLocked(pctx, sel); err != nil {
			err = fmt.Errorf("publish revoked partitions: %w", err)
			w.fatal.CompareAndSwap(nil, &err)
			if wake := w.wake.Load(); wake != nil {
				(*wake)()
			}
			w.log.Error("publish on revoke", zap.Error(err))
		}
		cancel()
	}
	w.dropPendingLocked(sel)
	w.pubMu.Unlock()

	w.mu.Lock()
	unpause := map[string][]int32{}
	for tp := range gone {
		if ps := w.parts[tp]; ps != nil && ps.restoring {
			unpause[tp.topic] = append(unpause[tp.topic], tp.partition)
		}
		if ps := w.parts[tp]; ps != nil && len(ps.boot) > 0 {
			w.bootChanged.Store(true)
		}
		delete(w.parts, tp)
		w.m.ConsumerLag.DeleteLabelValues(tp.topic, strconv.Itoa(int(tp.partition)))
	}
	w.m.Assigned.Set(float64(len(w.parts)))
	w.mu.Unlock()
	if len(unpause) > 0 && w.cl != nil {
		w.cl.ResumeFetchPartitions(unpause) // no longer ours: nothing is fetched
	}
}

// dropPendingLocked removes the pending partitions sel accepts from the
// publisher, with their dirty tiles and cached entities. pubMu held.
func (w *Worker) dropPendingLocked(sel func(*partState) bool) {
	kept := w.pending[:0]
	for _, ps := range w.pending {
		if !sel(ps) {
			kept = append(kept, ps)
			continue
		}
		clear(ps.dirty)
		clear(ps.cache)
		ps.pending = false
	}
	clear(w.pending[len(kept):])
	w.pending = kept
}

func (w *Worker) partition(topic string, p int32) *partState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.parts[topicPartition{topic, p}]
}

// apply applies one poll's records of every partition and commits all their
// state changes with their next offsets in ONE Pebble batch. Partitions are
// decoded and applied in parallel (up to GOMAXPROCS at once): they share no
// state.
func (w *Worker) apply(ctx context.Context, fetches kgo.Fetches) error {
	now := w.o.Now().UnixMilli()
	type work struct {
		ps *partState
		fp kgo.FetchTopicPartition
	}
	var todo []work
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		// nil: revoked while fetched; restoring: fetched before paused.
		if ps := w.partition(fp.Topic, fp.Partition); ps != nil && !ps.restoring {
			todo = append(todo, work{ps, fp})
		}
	})
	errs := make([]error, len(todo))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, t := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = w.applyPartition(t.ps, t.fp, now)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var staged []*partState
	w.dead = w.dead[:0]
	for _, t := range todo {
		ps := t.ps
		w.dead = append(w.dead, ps.dead...)
		if ps.staged > ps.next {
			staged = append(staged, ps)
			if t.fp.HighWatermark >= 0 {
				w.setLag(ps, t.fp.HighWatermark)
			}
		}
	}
	booted, err := w.applyBoot(ctx, now)
	if err != nil {
		return err
	}
	for _, ps := range booted {
		if ps.staged <= ps.next { // not staged by the live stream
			ps.staged, ps.applied = ps.next, 0
			staged = append(staged, ps)
		}
	}
	if len(staged) == 0 {
		return nil
	}
	// Dead letters first: once the offsets are committed they must be safe.
	if len(w.dead) > 0 {
		if err := w.cl.ProduceSync(ctx, w.dead...).FirstErr(); err != nil {
			w.m.Errors.WithLabelValues("dead_letter").Inc()
			return fmt.Errorf("produce %d dead letters: %w", len(w.dead), err)
		}
		for _, d := range w.dead {
			w.m.DeadLetters.WithLabelValues(headerValue(d, HeaderSource), headerValue(d, HeaderReason)).Inc()
		}
	}
	b := w.o.Store.NewBatch()
	for _, ps := range staged {
		for _, es := range ps.modified {
			w.keyBuf = keys.State(w.keyBuf[:0], ps.tp.topic, ps.tp.partition, es.key)
			w.valBuf = encodeEntity(w.valBuf[:0], ps.plan, ps.seenID, es)
			if err := b.Set(w.keyBuf, w.valBuf, nil); err != nil {
				b.Close()
				return fmt.Errorf("stage state of %s/%d: %w", ps.tp.topic, ps.tp.partition, err)
			}
		}
		if ps.staged > ps.applyFrom {
			if err := b.Set(keys.Offset(ps.tp.topic, ps.tp.partition), keys.PutU64(ps.staged), nil); err != nil {
				b.Close()
				return fmt.Errorf("stage offset of %s/%d: %w", ps.tp.topic, ps.tp.partition, err)
			}
		}
		for _, bf := range ps.boot {
			if bf.staged == bf.next {
				continue
			}
			id := ps.plan.Features[bf.idx].ID
			if bf.staged >= bf.end {
				_ = b.Delete(keys.Bootstrap(ps.tp.topic, ps.tp.partition, id), nil)
				_ = b.Set(keys.Republish(ps.tp.topic, ps.tp.partition, id), nil, nil)
			} else {
				_ = b.Set(keys.Bootstrap(ps.tp.topic, ps.tp.partition, id), keys.PutRange(bf.staged, bf.end), nil)
			}
		}
	}
	t0 := time.Now()
	if err := w.o.Store.Commit(b); err != nil {
		w.m.Errors.WithLabelValues("commit").Inc()
		return fmt.Errorf("commit %s/%d through offset %d: %w", staged[0].tp.topic, staged[0].tp.partition, staged[0].staged, err)
	}
	w.m.BatchCommit.Observe(time.Since(t0).Seconds())
	total := 0
	w.pubMu.Lock()
	defer w.pubMu.Unlock()
	for _, ps := range staged {
		w.commitBoot(ps)
		ps.next = ps.staged
		ps.applyFrom = max(ps.applyFrom, ps.next)
		for _, es := range ps.modified {
			es.modified = false
		}
		ps.modified = ps.modified[:0]
		total += ps.applied
		ps.metrics.eventsIn.Add(float64(ps.applied))
		w.commitOffCanonical(ps, ps.metrics.offCanonical)
		if !ps.pending {
			ps.pending = true
			w.pending = append(w.pending, ps)
		}
	}
	w.m.BatchEvents.Observe(float64(total))
	return nil
}

// applyPartition applies one partition's records to its cached entities and
// stages the result (ps.staged, ps.modified) for the batch commit. Nothing
// is visible in Pebble until the commit.
func (w *Worker) applyPartition(ps *partState, fp kgo.FetchTopicPartition, now int64) error {
	plan := ps.plan
	ps.staged, ps.applied = ps.next, 0
	ps.dead = ps.dead[:0]
	for _, r := range fp.Records {
		if r.Offset < ps.staged {
			continue
		}
		ps.staged = r.Offset + 1
		replay := r.Offset < ps.applyFrom
		if !replay {
			ps.canon.observe(r)
		}
		if rej := w.decoder.Decode(plan, r.Key, r.Value, now, &ps.dec); rej != nil {
			if !replay {
				ps.dead = append(ps.dead, w.deadLetter(plan, r, rej))
			}
			continue
		}
		es, err := w.entity(ps, ps.dec.Key)
		if err != nil {
			return err
		}
		w.noteSeen(ps, es, ps.dec.TS, replay)
		for i := range plan.Features {
			if replay {
				f := &plan.Features[i]
				ps.dirty[dirtyTile{es, i, f.Window.TileStart(ps.dec.TS)}] = struct{}{}
				if f.Window.Lifetime() {
					ps.dirty[dirtyTile{es, i, aggregations.BaseStart}] = struct{}{}
				}
				continue
			}
			w.applyFeature(ps, es, i, r.Offset, now)
		}
		if !replay {
			ps.applied++
		}
	}
	// Expire old tiles of the entities this batch touched.
	var removed []int64
	for _, es := range ps.modified {
		for i := range plan.Features {
			var baseChanged bool
			removed, baseChanged = es.series[i].Expire(plan.Features[i].Window, now, removed[:0])
			for _, s := range removed {
				ps.dirty[dirtyTile{es, i, s}] = struct{}{}
			}
			if baseChanged {
				ps.dirty[dirtyTile{es, i, aggregations.BaseStart}] = struct{}{}
			}
		}
	}
	return nil
}

// applyFeature applies the decoded event ps.dec (at source offset offset of
// the partition) to feature i of es, staging the entity and marking the
// changed tile dirty; an event too late for the feature's window is counted
// and dropped. Its tie-break for last is aggregations.Seq(partition, offset).
func (w *Worker) applyFeature(ps *partState, es *entityState, i int, offset, now int64) {
	f := &ps.plan.Features[i]
	ev := aggregations.Event{TS: ps.dec.TS, Seq: aggregations.Seq(ps.tp.partition, offset), Value: f.Value(&ps.dec)}
	tile, ok := es.series[i].Apply(f.Window, ev, now)
	if !ok {
		ps.metrics.droppedLate[i].Inc()
		return
	}
	w.markModified(ps, es)
	ps.dirty[dirtyTile{es, i, tile}] = struct{}{}
}

func (w *Worker) markModified(ps *partState, es *entityState) {
	if !es.modified {
		es.modified = true
		ps.modified = append(ps.modified, es)
	}
}

// setLag records the partition's consumer lag after its staged batch. The
// gauge child is resolved at the first batch (not at assignment, so that no
// lag is reported before it is known) and deleted on revocation.
func (w *Worker) setLag(ps *partState, highWatermark int64) {
	if ps.lag == nil {
		ps.lag = w.m.ConsumerLag.WithLabelValues(ps.tp.topic, strconv.Itoa(int(ps.tp.partition)))
	}
	ps.lag.Set(float64(highWatermark - ps.staged))
}

// cachedEntities is the number of entities cached since the last
// publication, over all partitions: the live stream and bootstraps both
// load through entity(), and only partitions with unpublished changes
// (w.pending) hold any. Cost: one map length per pending partition.
func (w *Worker) cachedEntities() int {
	n := 0
	for _, ps := range w.pending {
		n += len(ps.cache)
	}
	return n
}

// entity returns the cached state of key, loading it from Pebble.
func (w *Worker) entity(ps *partState, key string) (*entityState, error) {
	if es, ok := ps.cache[key]; ok {
		return es, nil
	}
	es := &entityState{key: key}
	ps.keyBuf = keys.State(ps.keyBuf[:0], ps.tp.topic, ps.tp.partition, key)
	val, found, err := w.o.Store.Get(ps.valBuf[:0], ps.keyBuf)
	if err != nil {
		return nil, fmt.Errorf("load state of %q in %s/%d: %w", key, ps.tp.topic, ps.tp.partition, err)
	}
	ps.valBuf = val
	if found {
		if err := decodeEntity(val, ps.plan, es); err != nil {
			return nil, fmt.Errorf("%s/%d: %w", ps.tp.topic, ps.tp.partition, err)
		}
	} else {
		es.series = make([]aggregations.Series, len(ps.plan.Features))
	}
	ps.cache[key] = es
	return es, nil
}

// publish produces the current value (or a tombstone) of every tile changed
// since the last publication, waits for the acknowledgements, records per
// partition that publication is complete through its committed offset, and
// empties the entity cache.
func (w *Worker) publish(ctx context.Context) error {
	w.pubMu.Lock()
	defer w.pubMu.Unlock()
	w.lastPublish = time.Now()
	return w.publishLocked(ctx, nil)
}

// publishLocked publishes the pending partitions sel accepts (nil: all) as
// publish does and removes them from the pending list. On error they stay
// pending and nothing is recorded as published. pubMu held.
func (w *Worker) publishLocked(ctx context.Context, sel func(*partState) bool) error {
	var parts []*partState
	for _, ps := range w.pending {
		if sel == nil || sel(ps) {
			parts = append(parts, ps)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	topic := w.o.Config.Kafka.FeatureLogTopic
	n := 0
	for _, ps := range parts {
		n += len(ps.dirty)
	}
	// One allocation for all records and one growing slab for their keys
	// and values (earlier sub-slices stay valid when the slab grows).
	recs := make([]kgo.Record, n)
	slab := make([]byte, 0, n*64)
	i := 0
	for _, ps := range parts {
		plan := ps.plan
		for d := range ps.dirty {
			r := &recs[i]
			i++
			r.Topic = topic
			if d.feature == seenFeature {
				slab, r.Key, r.Value = appendSeenRecord(slab, ps, d.es)
				w.cl.Produce(ctx, r, w.published)
				continue
			}
			f := &plan.Features[d.feature]
			from := len(slab)
			slab = keys.AppendFeatureLog(slab, keys.TileRef{Entity: plan.Entity, EntityKey: d.es.key, FeatureID: f.ID,
				SourcePartition: ps.tp.partition, Start: d.start})
			r.Key = slab[from:len(slab):len(slab)]
			if t, ok := d.es.series[d.feature].Tile(d.start); ok {
				from = len(slab)
				slab = aggregations.AppendTile(slab, t)
				r.Value = slab[from:len(slab):len(slab)]
			}
			w.cl.Produce(ctx, r, w.published)
		}
	}
	if err := w.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush feature log: %w", err)
	}
	if perr := w.pubErr.Load(); perr != nil {
		// Not recorded as published: a restart republishes these tiles.
		return fmt.Errorf("publish to feature log %s: %w", topic, *perr)
	}
	w.m.TilesPublished.Add(float64(n))
	b := w.o.Store.NewBatch()
	for _, ps := range parts {
		if err := b.Set(keys.Published(ps.tp.topic, ps.tp.partition), keys.PutU64(ps.next), nil); err != nil {
			b.Close()
			return fmt.Errorf("stage published offset: %w", err)
		}
	}
	// Losing this write only causes a harmless republish.
	if err := w.o.Store.CommitNoSync(b); err != nil {
		return fmt.Errorf("record published offsets: %w", err)
	}
	for _, ps := range parts {
		ps.published = ps.next
	}
	if sel == nil {
		w.dropPendingLocked(func(*partState) bool { return true })
	} else {
		w.dropPendingLocked(sel)
	}
	return nil
}

func (w *Worker) onPublished(r *kgo.Record, err error) {
	if err == nil {
		w.noteFeatureLogOffset(r)
		return
	}
	w.m.Errors.WithLabelValues("publish").Inc()
	w.pubErr.CompareAndSwap(nil, &err)
}

// Metrics returns the worker's metrics (for tests and embedding programs).
func (w *Worker) Metrics() *metrics.Worker { return w.m }

// commitBoot records committed bootstrap progress in memory: finished
// versions move to the republish list.
func (w *Worker) commitBoot(ps *partState) {
	if len(ps.boot) == 0 {
		return
	}
	kept := ps.boot[:0]
	for _, bf := range ps.boot {
		bf.next = bf.staged
		if bf.next >= bf.end {
			ps.republish = append(ps.republish, bf.idx)
			continue
		}
		kept = append(kept, bf)
	}
	if len(kept) != len(ps.boot) {
		w.bootChanged.Store(true)
	}
	ps.boot = kept
}

// register checks the feature file against the registry (refusing a changed
// definition under an existing version) and registers new versions.
func (w *Worker) register(ctx context.Context) error {
	topic := w.o.Config.Kafka.RegistryTopic
	view, err := registry.Load(ctx, w.o.Brokers, topic, w.log)
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
			recs = w.appendStatus(recs, ps, i, state, w.lastPublish, ps.published, 0)
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
