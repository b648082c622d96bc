package registry

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
)

// Service is a feature service as the running feature file declares it,
// recorded by every worker start (RecordFile). Unlike a definition, a
// service may change without a version: the last record of a name replaces
// the earlier ones.
type Service struct {
	Name        string `json:"name"`
	Owner       string `json:"owner,omitempty"`
	Description string `json:"description,omitempty"`
	Entity      string `json:"entity,omitempty"`
	// Features are the references as written ("name@version" or a bare
	// name); Resolved, per Features, the name@version each resolved to when
	// recorded (a bare name: the newest ready version then).
	Features []string `json:"features"`
	Resolved []string `json:"resolved"`
	Models   []string `json:"models,omitempty"`
	// Retired: the service is no longer in the running feature file (the
	// record is kept, so that what was known about it is not lost).
	Retired      bool      `json:"retired,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
	RegisteredBy string    `json:"registered_by"`
}

// FeatureMeta is what the running feature file says about a feature version
// beyond its definition (none of it is part of the definition hash), so it
// may change without a version bump: the last record of a version replaces
// the earlier ones.
type FeatureMeta struct {
	Feature     string   `json:"feature"` // name@version
	Owner       string   `json:"owner,omitempty"`
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	Deprecated  bool     `json:"deprecated,omitempty"`
	ReplacedBy  string   `json:"replaced_by,omitempty"` // name@version
	// Sunset is the announced sunset date (YYYY-MM-DD), "" when none.
	Sunset string `json:"sunset,omitempty"`
	// Retired: the version is no longer in the running feature file (it
	// stays registered; see Service.Retired).
	Retired      bool      `json:"retired,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
	RegisteredBy string    `json:"registered_by"`
}

// sameService reports whether a and b record the same content, ignoring
// when and by whom.
func sameService(a, b Service) bool {
	a.RegisteredAt, a.RegisteredBy = time.Time{}, ""
	b.RegisteredAt, b.RegisteredBy = time.Time{}, ""
	return reflect.DeepEqual(normService(a), normService(b))
}

func normService(s Service) Service {
	if len(s.Models) == 0 {
		s.Models = nil
	}
	if len(s.Features) == 0 {
		s.Features = nil
	}
	if len(s.Resolved) == 0 {
		s.Resolved = nil
	}
	return s
}

// sameMeta: as sameService.
func sameMeta(a, b FeatureMeta) bool {
	a.RegisteredAt, a.RegisteredBy = time.Time{}, ""
	b.RegisteredAt, b.RegisteredBy = time.Time{}, ""
	if len(a.Tags) == 0 {
		a.Tags = nil
	}
	if len(b.Tags) == 0 {
		b.Tags = nil
	}
	return reflect.DeepEqual(a, b)
}

// applyService folds a service record, the last one of a name winning;
// v.mu is held.
func (v *View) applyService(r Record) {
	if r.Tombstone {
		delete(v.services, r.ID)
		return
	}
	v.services[r.ID] = *r.Service
}

// applyMeta folds a feature-metadata record, the last one of a version
// winning; v.mu is held.
func (v *View) applyMeta(r Record) {
	if r.Tombstone {
		delete(v.meta, r.ID)
		return
	}
	v.meta[r.ID] = *r.Meta
}

// Service returns the recorded feature service name (retired ones too:
// check Retired).
func (v *View) Service(name string) (Service, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	s, ok := v.services[name]
	return s, ok
}

// Services returns every recorded feature service, retired ones included,
// sorted by name.
func (v *View) Services() []Service {
	v.mu.RLock()
	out := make([]Service, 0, len(v.services))
	for _, s := range v.services {
		out = append(out, s)
	}
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Meta returns the recorded metadata of the feature version id
// (name@version).
func (v *View) Meta(id string) (FeatureMeta, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	m, ok := v.meta[id]
	return m, ok
}

// HasFileRecords reports whether the catalog holds any service or feature
// metadata record, i.e. whether a worker that records its feature file
// (RecordFile) has started on it: without, what runs is unknown.
func (v *View) HasFileRecords() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.services) > 0 || len(v.meta) > 0
}

// FileRecords returns what cfg declares as the catalog records them: its
// services (each reference resolved with cfg.ResolveReady and ready, nil:
// every version ready) and the metadata of its feature versions, stamped
// with at and by.
func FileRecords(cfg *config.File, ready func(string) bool, at time.Time, by string) ([]Service, []FeatureMeta, error) {
	var svcs []Service
	for _, s := range cfg.Services {
		rs := Service{Name: s.Name, Owner: s.Owner, Description: strings.TrimSpace(s.Description), Entity: s.Entity,
			Features: slices.Clone(s.Features), Models: slices.Clone(s.Models), RegisteredAt: at, RegisteredBy: by}
		for _, ref := range s.Features {
			f, _, err := cfg.ResolveReady(ref, ready)
			if err != nil {
				return nil, nil, fmt.Errorf("feature service %s: %w", s.Name, err)
			}
			rs.Resolved = append(rs.Resolved, f.ID)
		}
		svcs = append(svcs, rs)
	}
	metas := make([]FeatureMeta, 0, len(cfg.Features))
	for _, f := range cfg.Features {
		m := FeatureMeta{Feature: f.ID, Owner: f.Owner, Description: strings.TrimSpace(f.Description), Tags: slices.Clone(f.Tags),
			Deprecated: f.Deprecated, ReplacedBy: f.ReplacedBy, RegisteredAt: at, RegisteredBy: by}
		if !f.Sunset.IsZero() {
			m.Sunset = f.Sunset.UTC().Format(time.DateOnly)
		}
		metas = append(metas, m)
	}
	return svcs, metas, nil
}

// RecordFile records in the registry topic the feature services of cfg and
// the metadata of its feature versions (owner, description, tags,
// deprecation), the parts of the feature file that change without a
// version bump, and applies them to v. It writes only what differs from v
// (so a restart with the same file writes nothing and keeps registered_at),
// and marks Retired the services and versions v records that cfg no longer
// has. by names the registrant. Register calls it after registering the
// versions, so every worker start records its file: the catalog shows what
// the last started worker runs. Cost: one produce of the changed records.
func RecordFile(ctx context.Context, cl *kgo.Client, topic string, cfg *config.File, v *View, by string) error {
	svcs, metas, err := FileRecords(cfg, v.Ready, time.Now().UTC(), by)
	if err != nil {
		return err
	}
	var recs []*kgo.Record
	inFile := map[string]bool{}
	for _, s := range svcs {
		inFile[s.Name] = true
		if old, ok := v.Service(s.Name); ok && sameService(old, s) {
			continue
		}
		r, err := ServiceRecord(topic, s)
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}
	for _, old := range v.Services() {
		if inFile[old.Name] || old.Retired {
			continue
		}
		old.Retired, old.RegisteredAt, old.RegisteredBy = true, time.Now().UTC(), by
		r, err := ServiceRecord(topic, old)
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}
	inFile = map[string]bool{}
	for _, m := range metas {
		inFile[m.Feature] = true
		if old, ok := v.Meta(m.Feature); ok && sameMeta(old, m) {
			continue
		}
		r, err := MetaRecord(topic, m)
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}
	v.mu.RLock()
	var gone []FeatureMeta
	for id, m := range v.meta {
		if !inFile[id] && !m.Retired {
			gone = append(gone, m)
		}
	}
	v.mu.RUnlock()
	slices.SortFunc(gone, func(a, b FeatureMeta) int { return strings.Compare(a.Feature, b.Feature) })
	for _, m := range gone {
		m.Retired, m.RegisteredAt, m.RegisteredBy = true, time.Now().UTC(), by
		r, err := MetaRecord(topic, m)
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}
	if len(recs) == 0 {
		return nil
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("record the feature services and metadata of %s in %s: %w", cfg.Path, topic, err)
	}
	for _, r := range recs {
		if err := v.Apply(r.Key, r.Value); err != nil {
			return err
		}
	}
	return nil
}
