// Package lookup is featurepipe's lookup service: it follows the compacted
// feature log into its own Pebble view (one value per entity holding every
// tile of every feature) and answers HTTP lookups from it, folding tiles as
// of the request time with the same aggregations code the workers and the
// backfill job use. Any replica answers any entity.
//
// Readiness: /readyz answers 503, and lookups answer 503 not_ready, until the
// view has caught up with the feature log's end offsets seen at start.
package lookup

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/internal/state"
)

// Options configure a Service. Brokers, Config and Store are required.
type Options struct {
	Brokers []string
	Config  *config.File
	Store   *state.Store
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
}

// Service is one lookup replica.
type Service struct {
	o       Options
	log     *zap.Logger
	m       *metrics.Lookup
	started time.Time

	mu     sync.Mutex
	behind map[int32]int64 // partitions not yet caught up -> end offset to reach
	ready  atomic.Bool

	entities map[string]*entityInfo
	byKey    map[string]*entityInfo // entity key field (Feast join key) -> entity
}

// entityInfo is what the HTTP layer needs of one entity.
type entityInfo struct {
	name     string
	keyField string
	features []*config.Feature // all versions, file order
}

// New validates the options.
func New(o Options) (*Service, error) {
	if len(o.Brokers) == 0 || o.Config == nil || o.Store == nil {
		return nil, errors.New("lookup: Brokers, Config and Store are required")
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
	s := &Service{o: o, log: o.Log, m: metrics.NewLookup(o.Registerer), started: time.Now(),
		behind: map[int32]int64{-1: 0}, entities: map[string]*entityInfo{}, byKey: map[string]*entityInfo{}}
	for _, e := range o.Config.Entities {
		info := &entityInfo{name: e.Name, keyField: e.Key, features: o.Config.EntityFeatures(e.Name)}
		s.entities[e.Name] = info
		s.byKey[e.Key] = info
	}
	return s, nil
}

// Run follows the feature log until ctx is canceled. Serve HTTP with Handler
// concurrently.
func (s *Service) Run(ctx context.Context) error { return s.consume(ctx) }

// Ready reports whether the view has caught up.
func (s *Service) Ready() bool { return s.ready.Load() }

// Handler returns the HTTP API: lookups, Feast's get-online-features,
// /healthz, /readyz and /metrics.
func (s *Service) Handler() http.Handler { return s.routes() }
