// Package lookup is featurepipe's lookup service: it follows the compacted
// feature log into its own Pebble view (one value per entity holding every
// tile of every feature) and answers HTTP lookups from it, folding tiles as
// of the request time with the same aggregations code the workers and the
// backfill job use. Any replica answers any entity.
//
// Readiness: /readyz answers 503, and lookups answer 503 not_ready, until the
// view has caught up with the feature log's end offsets seen at start and
// the registry view has read the registry topic up to its end offsets seen
// at start (before that, a version still warming up would look ready).
package lookup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// Options configure a Service. Brokers, Config and Store are required.
type Options struct {
	// Brokers are the seed brokers; every client connects with
	// Config.Kafka.Security (TLS, SASL; kafka.ConnOf).
	Brokers []string
	Config  *config.File
	// Store holds the view: opened with the view's merge operator
	// (OpenStore, or state.Open with StoreOptions), which New checks.
	Store *state.Store
	// Registerer receives the lookup metrics. Default: a private registry.
	Registerer prometheus.Registerer
	// Gatherer serves /metrics. Default: nothing is served on /metrics
	// unless Registerer is also a Gatherer (a *prometheus.Registry).
	Gatherer prometheus.Gatherer
	// Log defaults to a no-op logger.
	Log *zap.Logger
	// Now is the clock lookups are answered as of. Default time.Now.
	Now func() time.Time
	// MaxBodyBytes bounds a request body. Default 1 MiB; larger bodies get 413.
	MaxBodyBytes int64
	// MaxKeys bounds the keys (rows) of one request. Default 1000.
	MaxKeys int
	// ClientID names this replica in Kafka. Default "featurepipe-lookup".
	ClientID string
	// CacheEntries bounds the entity views kept in memory, encoded, in
	// front of the Pebble view (see viewCache): a hit costs a map read (no
	// allocation) instead of a Pebble Get and a copy of the value; either
	// way the lookup then decodes only the features it asks for. A cached
	// view is never older than the Pebble view.
	// Memory: one encoded view per entry, typically a few KiB (every tile
	// of every feature of the entity), plus its cached answers (see
	// NoAnswerCache): two pointer-free objects each, so a full cache adds
	// little to garbage-collection work. Default 100,000; negative
	// disables the cache (and the answer cache).
	CacheEntries int
	// NoAnswerCache turns off the answer cache (see answercache.go): each
	// cached view keeps the finalized values lookups computed from it,
	// each valid until the next window, tile, pending-event, ttl or
	// first-seen boundary it depends on, and dropped with the view when
	// the entity changes, so that repeated lookups of an entity copy values
	// instead of decoding and folding its tiles. Exact: an answer equals
	// the one computed from the view. Memory: 40 bytes per cached value, at
	// most one per feature version of the entity per cached view. Default
	// false: on whenever the view cache is.
	NoAnswerCache bool
	// LookupLogSample is the probability that one answered key (of any
	// route) is logged to the config's lookup-log topic as a
	// lookuplog.Entry. Default (0): 1.0, every key. Negative (use
	// NoLookupLog): nothing is logged. Values above 1 are rejected.
	// Logging never blocks or fails a lookup: records are produced
	// asynchronously into a bounded buffer and dropped, and counted, when
	// it is full (see LookupLogBuffer).
	LookupLogSample float64
	// Snapshots, when set, lets an empty replica start from the newest
	// worker snapshots covering every source partition instead of replaying
	// the whole feature log (see coldStart). Default nil.
	Snapshots *snapshot.Store
	// LookupLogBuffer bounds the lookup-log entries produced and not yet
	// acknowledged by the broker; a batch of entries that would exceed it
	// is dropped (and counted) instead of slowing lookups down. Default
	// 100,000 (a few tens of MB of entries).
	LookupLogBuffer int
	// Tokens, when set, are the API tokens the lookup routes accept, each
	// with its consumer and scopes (see auth.go, LoadTokens). Default nil:
	// the API is open to anyone who can reach it, and Run logs a warning
	// saying so.
	Tokens *Tokens
	// MaxConsumers bounds the consumer names taken from the ConsumerHeader
	// that get their own label in the per-consumer metrics; later names are
	// counted as "other" (see consumers.go). Token consumers and
	// "anonymous" always have their own. Default DefaultMaxConsumers (100).
	MaxConsumers int
}

// NoLookupLog is the Options.LookupLogSample that turns the lookup log off.
const NoLookupLog = -1

// Service is one lookup replica.
type Service struct {
	o Options
	// jsonOnly makes POST /v1/lookup decode every body with encoding/json
	// (tests compare the fast decoder with it; see decodeLookup).
	jsonOnly bool
	// beforeCommit, if set, runs in commitLogBatch just before the batch
	// is committed (tests interleave lookups there, and read the batch).
	beforeCommit func(*pebble.Batch)
	// settled, if set, is called when settleViews ends, with the operands
	// that started it (tests).
	settled func(operands int64)
	// settlePausing, if set, is called by settleViews as each pause between
	// two chunks begins, with how long the chunk before it took (tests).
	settlePausing func(took time.Duration)
	// viewMu is held by each feature-log batch's commit and by each chunk
	// of settleViews: see settle.go.
	viewMu  sync.Mutex
	log     *zap.Logger
	m       *metrics.Lookup
	started time.Time

	mu          sync.Mutex
	behind      map[int32]int64 // partitions not yet caught up -> end offset to reach
	regCaughtUp bool            // the registry view has read the topic's end offsets seen at start
	ready       atomic.Bool

	entities map[string]*entityInfo
	byKey    map[string]*entityInfo // the entity's key fields (Feast join keys) as a joinKeySet -> entity
	feats    featureIndex

	reg   *registry.View // feature versions warming up (followed in Run)
	cache *viewCache
	llog  lookupLogger

	consumers consumerSet
	// replicaID (16 random hex digits, new at every start) and requests (a
	// sequence) make the request id of lookup-log entries.
	replicaID string
	requests  atomic.Uint64
	// answerHits and answerMisses are the result series of
	// metrics.Lookup.AnswerCache.
	answerHits, answerMisses prometheus.Counter
}

// entityInfo is what the HTTP layer needs of one entity.
type entityInfo struct {
	name string
	keys []string // the entity's key fields, in order (config.Entity.Keys)
	// latestNames are the entity's feature names, once each, in file
	// order: what GET /v1/features answers (each at its newest ready
	// version, see pick).
	latestNames []string
	latestErr   error
}

// New validates the options.
func New(o Options) (*Service, error) {
	if len(o.Brokers) == 0 || o.Config == nil || o.Store == nil {
		return nil, errors.New("lookup: Brokers, Config and Store are required")
	}
	if o.Store.MergerName() != ViewMergerName {
		return nil, fmt.Errorf("lookup: the store has merge operator %q, the view needs %q: open it with lookup.OpenStore (or lookup.StoreOptions)",
			o.Store.MergerName(), ViewMergerName)
	}
	if o.Registerer == nil {
		reg := prometheus.NewRegistry()
		o.Registerer, o.Gatherer = reg, reg
	}
	if o.Gatherer == nil {
		if g, ok := o.Registerer.(prometheus.Gatherer); ok {
			o.Gatherer = g
		}
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 1000
	}
	if o.ClientID == "" {
		o.ClientID = "featurepipe-lookup"
	}
	switch {
	case o.CacheEntries == 0:
		o.CacheEntries = 100_000
	case o.CacheEntries < 0:
		o.CacheEntries = 0
	}
	switch {
	case o.LookupLogSample > 1 || math.IsNaN(o.LookupLogSample):
		return nil, fmt.Errorf("lookup: LookupLogSample %v must be a probability (0 for the default 1.0, negative to disable)", o.LookupLogSample)
	case o.LookupLogSample == 0:
		o.LookupLogSample = 1
	case o.LookupLogSample < 0:
		o.LookupLogSample = 0
	}
	if o.MaxConsumers <= 0 {
		o.MaxConsumers = DefaultMaxConsumers
	}
	if o.LookupLogBuffer <= 0 {
		o.LookupLogBuffer = 100_000
	}
	s := &Service{o: o, log: o.Log, m: metrics.NewLookup(o.Registerer), started: time.Now(),
		behind: map[int32]int64{-1: 0}, entities: map[string]*entityInfo{}, byKey: map[string]*entityInfo{},
		cache: newViewCache(o.CacheEntries), reg: registry.NewView()}
	s.replicaID = fmt.Sprintf("%016x", rand.Uint64())
	s.answerHits, s.answerMisses = s.m.AnswerCache.WithLabelValues("hit"), s.m.AnswerCache.WithLabelValues("miss")
	s.feats = newFeatureIndex(o.Config)
	s.consumers.init(o.MaxConsumers, s.feats.list, s.m.FeatureLookups, s.m.DeprecatedLookups, o.Tokens.consumers())
	for _, e := range o.Config.Entities {
		info := &entityInfo{name: e.Name, keys: e.Keys}
		seen := map[string]bool{}
		for _, f := range o.Config.EntityFeatures(e.Name) {
			if seen[f.Name] {
				continue
			}
			seen[f.Name] = true
			if _, err := o.Config.Feature(f.Name); err != nil {
				info.latestErr = err
				break
			}
			info.latestNames = append(info.latestNames, f.Name)
		}
		s.entities[e.Name] = info
		s.byKey[joinKeySet(e.Keys)] = info
	}
	s.llog.init(s)
	return s, nil
}

// Run follows the feature log until ctx is canceled. Serve HTTP with Handler
// concurrently.
//
// Run also owns the lookup-log producer: lookups answered before Run starts
// or after it returns are not logged. On return it flushes the records
// still buffered for up to 5 seconds.
func (s *Service) Run(ctx context.Context) error {
	if err := s.checkViewFormat(); err != nil {
		return err
	}
	if s.o.Tokens == nil {
		s.log.Warn("the lookup API is open: no tokens file (serve --tokens), so anyone who can reach it reads every feature")
	} else {
		s.log.Info("the lookup API requires tokens", zap.Int("tokens", s.o.Tokens.Len()))
	}
	stop, err := s.llog.start(ctx)
	if err != nil {
		return err
	}
	defer stop()
	// The registry follower runs beside the feature-log consumer and is
	// stopped and waited for when the consumer returns, before the producer
	// is flushed: Run leaves no goroutine behind.
	rctx, cancel := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		if err := registry.Follow(rctx, kafka.ConnOf(s.o.Brokers, s.o.Config), s.o.Config.Kafka.RegistryTopic, s.reg, s.log, s.registryCaughtUp); err != nil {
			s.log.Warn("following the feature registry", zap.Error(err))
		}
	}()
	err = s.consume(ctx)
	cancel()
	<-followed
	return err
}

// Metrics returns the replica's metrics (for tests and embedding programs).
func (s *Service) Metrics() *metrics.Lookup { return s.m }

// Ready reports whether the view has caught up with the feature log and
// the registry view with the registry.
func (s *Service) Ready() bool { return s.ready.Load() }

// Registry returns the catalog view the replica follows (in Run): feature
// versions, statuses, services, datasets and models. Read-only for callers;
// the web UI reads it.
func (s *Service) Registry() *registry.View { return s.reg }

// Handler returns the HTTP API: lookups, Feast's get-online-features,
// /healthz, /readyz and /metrics.
func (s *Service) Handler() http.Handler { return s.routes() }
