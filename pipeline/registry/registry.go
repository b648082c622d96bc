// Package registry keeps the feature-version registry: a compacted Kafka
// topic recording, for every feature version (name@version), the hash of its
// definition and, per source partition, whether its state is still warming
// up (being bootstrapped from history) or ready.
//
// The first worker to run a version registers its definition; a later start
// with a different definition under the same version is refused, with the
// difference shown, because a definition never changes under one version.
//
// The topic is the catalog's log (DESIGN.md, "The catalog"): besides feature
// versions and their status it holds the datasets every backfill registers
// and the models registered on them (catalog.go), each name@version
// immutable once written, and the feature services and feature-version
// metadata (owner, description, deprecation) of the feature file the last
// started worker runs (services.go), which change without a version. codec.go is the one codec of its records and View
// the one reader every command uses.
package registry

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
)

// Definition is a registered feature version.
type Definition struct {
	Feature      string      `json:"feature"` // name@version
	Hash         string      `json:"hash"`
	Fields       [][2]string `json:"definition"` // config.Feature.Definition()
	RegisteredAt time.Time   `json:"registered_at"`
	RegisteredBy string      `json:"registered_by"`
}

// Status states.
const (
	StateWarmingUp = "warming_up" // bootstrapping history for this partition
	StateReady     = "ready"
)

// Status is one feature version's state in one source partition.
type Status struct {
	Feature   string    `json:"feature"`
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	State     string    `json:"state"`
	UpdatedAt time.Time `json:"updated_at"`
	// Progress of a bootstrap: next offset to replay and where it ends.
	Next int64 `json:"next,omitempty"`
	End  int64 `json:"end,omitempty"`
}

// ErrDefinitionChanged is returned (wrapped, with the difference) by Check
// when a feature version's definition differs from the registered one.
var ErrDefinitionChanged = errors.New("feature definition changed under the same version")

// View is the registry's content (feature versions, their statuses and
// metadata, the running file's feature services, and the catalog's datasets
// and models), kept current by Load or Follow. Safe for
// concurrent use. Ready, called on every lookup, takes no lock: it reads an
// immutable set of the versions warming up, replaced whenever one changes.
type View struct {
	mu       sync.RWMutex
	defs     map[string]Definition
	status   map[string]map[string]Status // feature -> topic/partition -> status
	datasets map[string]Dataset           // name@version
	models   map[string]Model             // name@version
	services map[string]Service           // name
	meta     map[string]FeatureMeta       // name@version
	warming  atomic.Pointer[map[string]bool]
}

// NewView returns an empty view.
func NewView() *View {
	v := &View{defs: map[string]Definition{}, status: map[string]map[string]Status{},
		datasets: map[string]Dataset{}, models: map[string]Model{},
		services: map[string]Service{}, meta: map[string]FeatureMeta{}}
	v.warming.Store(&map[string]bool{})
	return v
}

// noteWarming updates the warming-up set for id; v.mu must be held.
func (v *View) noteWarming(id string) {
	warm := false
	for _, s := range v.status[id] {
		warm = warm || s.State == StateWarmingUp
	}
	cur := *v.warming.Load()
	if cur[id] == warm {
		return
	}
	next := make(map[string]bool, len(cur)+1)
	for k := range cur {
		next[k] = true
	}
	if warm {
		next[id] = true
	} else {
		delete(next, id)
	}
	v.warming.Store(&next)
}

// Apply folds one registry record (key, value) into the view. A record of
// a kind this version does not know is ignored (see codec.go); a malformed
// one is an error and leaves the view unchanged.
func (v *View) Apply(key, value []byte) error {
	r, err := DecodeRecord(key, value)
	if errors.Is(err, ErrUnknownKind) {
		return nil
	}
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	switch r.Kind {
	case KindDefinition:
		id := r.ID
		if r.Tombstone {
			delete(v.defs, id)
			return nil
		}
		d := *r.Definition
		if old, ok := v.defs[id]; ok && old.Hash != d.Hash {
			return nil // the first definition of a version wins (see Register)
		}
		v.defs[id] = d
	case KindStatus:
		i := strings.IndexByte(r.ID, '/')
		id, tp := r.ID[:i], r.ID[i+1:]
		if r.Tombstone {
			delete(v.status[id], tp)
			v.noteWarming(id)
			return nil
		}
		if v.status[id] == nil {
			v.status[id] = map[string]Status{}
		}
		v.status[id][tp] = *r.Status
		v.noteWarming(id)
	case KindDataset:
		v.applyDataset(r)
	case KindModel:
		v.applyModel(r)
	case KindService:
		v.applyService(r)
	case KindMeta:
		v.applyMeta(r)
	}
	return nil
}

// Definition returns the registered definition of a feature version.
func (v *View) Definition(id string) (Definition, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	d, ok := v.defs[id]
	return d, ok
}

// Definitions returns every registered feature version, sorted by id.
func (v *View) Definitions() []Definition {
	v.mu.RLock()
	out := make([]Definition, 0, len(v.defs))
	for _, d := range v.defs {
		out = append(out, d)
	}
	v.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Feature < out[j].Feature })
	return out
}

// Ready reports whether no partition of the feature version is warming up.
// A version the registry knows no status of is ready: it has been computed
// from the first event on.
func (v *View) Ready(id string) bool { return !(*v.warming.Load())[id] }

// Statuses returns the per-partition statuses of a feature version, sorted
// by topic and partition.
func (v *View) Statuses(id string) []Status {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]Status, 0, len(v.status[id]))
	for _, s := range v.status[id] {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// Check compares every feature of cfg with its registered definition and
// returns ErrDefinitionChanged listing each difference, or nil.
func Check(cfg *config.File, v *View) error {
	var msgs []string
	for _, f := range cfg.Features {
		d, ok := v.Definition(f.ID)
		if !ok || d.Hash == f.Hash {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s (%s:%d) was registered %s by %s with a different definition:",
			f.ID, cfg.Path, f.Line, d.RegisteredAt.Format(time.RFC3339), d.RegisteredBy)
		was := map[string]string{}
		for _, kv := range d.Fields {
			was[kv[0]] = kv[1]
		}
		for _, kv := range f.Definition() {
			if old, ok := was[kv[0]]; !ok || old != kv[1] {
				fmt.Fprintf(&b, "\n    %s: registered %q, now %q", kv[0], old, kv[1])
			}
		}
		fmt.Fprintf(&b, "\n  a definition never changes under one version: bump the version (%s@%d) to compute the new definition side by side with the old one",
			f.Name, f.Version+1)
		msgs = append(msgs, b.String())
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n  %s", ErrDefinitionChanged, strings.Join(msgs, "\n  "))
}

// Load reads the registry topic up to its end offsets at the time of the
// call into a new view (kafka.ReadToEnd: read-committed, ends by position).
// Unreadable records are skipped with a warning.
func Load(ctx context.Context, conn kafka.Conn, topic string, log *zap.Logger) (*View, error) {
	if log == nil {
		log = zap.NewNop()
	}
	v := NewView()
	cl, err := kafka.NewClient(conn, "featurepipe-registry", log)
	if err != nil {
		return nil, fmt.Errorf("registry client: %w", err)
	}
	defer cl.Close()
	err = kafka.ReadToEnd(ctx, cl, topic, func(r *kgo.Record) error {
		if err := v.Apply(r.Key, r.Value); err != nil {
			log.Warn("skipping unreadable registry record", zap.Error(err))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read registry: %w", err)
	}
	return v, nil
}

// Follow keeps v current with the registry topic until ctx ends, reading it
// from the start. Lookup replicas use it to know which versions are warming
// up.
//
// Until v holds every record the topic had when Follow started, v.Ready may
// report a version that is warming up as ready: Follow first reads the topic
// up to its end offsets (kafka.ReadToEnd, retrying every second while Kafka
// is unreachable), then calls caughtUp, once, and goes on from where it
// stopped. caughtUp may be nil. It is never called if ctx ends first.
// Partitions added to the topic after the start are not followed.
func Follow(ctx context.Context, conn kafka.Conn, topic string, v *View, log *zap.Logger, caughtUp func()) error {
	if log == nil {
		log = zap.NewNop()
	}
	admin, err := kafka.NewClient(conn, "featurepipe-registry", log)
	if err != nil {
		return fmt.Errorf("registry client: %w", err)
	}
	apply := func(r *kgo.Record) {
		if err := v.Apply(r.Key, r.Value); err != nil {
			log.Warn("skipping unreadable registry record", zap.Error(err))
		}
	}
	next, err := kafka.CatchUp(ctx, admin, topic, nil, apply,
		func(err error) {
			log.Warn("waiting for the feature registry", zap.String("topic", topic), zap.Error(err))
		})
	admin.Close()
	if err != nil { // CatchUp fails only when ctx ends
		return nil
	}
	if caughtUp != nil {
		caughtUp()
	}
	opts := append(kafka.FollowFrom(topic, next, kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	cl, err := kafka.NewClient(conn, "featurepipe-registry", log, opts...)
	if err != nil {
		return fmt.Errorf("registry client: %w", err)
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachRecord(apply)
	}
}

// Register records the definition of every feature of cfg the view does not
// know yet, then the file's services and feature metadata (RecordFile), and
// adds them to the view. by names the registrant.
//
// Registration races: two registrants that loaded the registry before
// either wrote can both find a version unregistered and both write it. The
// first definition of a version in the log wins (View.Apply keeps it), so
// after writing, Register reads the registry topic again up to its end and
// fails with ErrDefinitionChanged, as Check does, unless every definition
// it wrote is the winner's (the same hash). A loser writes the winner's
// definition again before failing, so that compaction, which keeps the last
// record of a key, keeps the winner's.
func Register(ctx context.Context, cl *kgo.Client, topic string, cfg *config.File, v *View, by string) error {
	if err := registerDefinitions(ctx, cl, topic, cfg, v, by); err != nil {
		return err
	}
	return RecordFile(ctx, cl, topic, cfg, v, by)
}

// registerDefinitions is Register's first part: the feature versions.
func registerDefinitions(ctx context.Context, cl *kgo.Client, topic string, cfg *config.File, v *View, by string) error {
	var recs []*kgo.Record
	now := time.Now().UTC()
	for _, f := range cfg.Features {
		if _, ok := v.Definition(f.ID); ok {
			continue
		}
		d := Definition{Feature: f.ID, Hash: f.Hash, Fields: f.Definition(), RegisteredAt: now, RegisteredBy: by}
		r, err := DefinitionRecord(topic, d)
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}
	if len(recs) == 0 {
		return nil
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("register feature versions in %s: %w", topic, err)
	}
	after, err := readView(ctx, cl, topic)
	if err != nil {
		return fmt.Errorf("read back the registration: %w", err)
	}
	var repair []*kgo.Record
	for _, r := range recs {
		mine, err := DecodeRecord(r.Key, r.Value)
		if err != nil {
			return err
		}
		won, ok := after.Definition(mine.ID)
		if !ok {
			return fmt.Errorf("register %s in %s: the definition written is not in the topic when read back (deleted meanwhile?)", mine.ID, topic)
		}
		wr, err := DefinitionRecord(topic, won)
		if err != nil {
			return err
		}
		if err := v.Apply(wr.Key, wr.Value); err != nil {
			return err
		}
		if mine.Definition.Hash != won.Hash {
			repair = append(repair, wr)
		}
	}
	if len(repair) == 0 {
		return nil
	}
	if err := cl.ProduceSync(ctx, repair...).FirstErr(); err != nil {
		return fmt.Errorf("restore the winning definitions in %s: %w", topic, err)
	}
	if err := Check(cfg, after); err != nil {
		return fmt.Errorf("another registrant registered first: %w", err)
	}
	return errors.New("registry: lost a registration race without a difference (bug)")
}
