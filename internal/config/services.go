package config

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrUnknownService is returned (wrapped, with a message listing the defined
// services) by [File.Service] when no feature service has the name.
var ErrUnknownService = errors.New("unknown feature service")

// Service is a feature service: the named bundle of feature versions one
// model (or any consumer) reads, declared under services: in the feature
// file. Lookups and backfills that name the service get exactly these
// features, as if they had listed them.
//
// Invariants after Load: Name is unique among services; Features is not
// empty, has no duplicate, and every entry resolves with [File.Feature]; every
// version every entry can resolve to belongs to Entity.
type Service struct {
	Name        string
	Owner       string
	Description string
	// Features are the references as written: "name@version" pins a
	// version; a bare "name" means the newest ready version, resolved when
	// it is read (a lookup resolves it as a bare name in /v1/lookup does and
	// reports the version served; a backfill as --features does and records
	// it in its manifest).
	Features []string
	// Models are the names of the models that consume the service
	// (optional, informative).
	Models []string
	// Entity is the one entity of all the service's features.
	Entity string
	Line   int
}

// Service returns the feature service with the given name. An unknown name
// returns an error wrapping ErrUnknownService whose message lists the
// defined services (close names first).
func (f *File) Service(name string) (*Service, error) {
	for _, s := range f.Services {
		if s.Name == name {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w %q; %s", ErrUnknownService, name, f.ServiceList(name))
}

// ServiceList describes the defined feature services for a message about
// name: close names first, then every service, or that none is defined.
func (f *File) ServiceList(name string) string {
	names := make([]string, len(f.Services))
	for i, s := range f.Services {
		names[i] = s.Name
	}
	if len(names) == 0 {
		return "no feature services are defined (declare them under services: in the feature file)"
	}
	sort.Strings(names)
	s := "feature services: " + strings.Join(names, ", ")
	if c := closeNames(name, names, 1); len(c) > 0 {
		s = fmt.Sprintf("did you mean %q? %s", c[0], s)
	}
	return s
}

type serviceItem struct {
	s *Service
	m mapping
	// featureLines[i] is the line of Features[i]; models likewise.
	featureLines []int
}

// decodeServices reads the services: list (optional).
func (d *decoder) decodeServices(top mapping) {
	for i, n := range d.list(top, "services", "feature services (name, owner, description, features, models)") {
		m, ok := d.mapping(n, fmt.Sprintf("services[%d]", i), serviceKeys)
		if !ok {
			continue
		}
		it := serviceItem{m: m, s: &Service{
			Name:        d.str(m, "name", true, "the service's name, used in lookups (feature_service) and backfill (--feature-service)"),
			Owner:       d.str(m, "owner", true, "the team answerable for the service"),
			Description: d.str(m, "description", true, "what the service is for, e.g. the model it feeds"),
			Line:        m.line,
		}}
		for j, fn := range d.list(m, "features", "feature references (name@version, or name for the newest ready version)") {
			if v, ok := d.listString(fn, fmt.Sprintf("%s[%d]", m.field("features"), j)); ok {
				it.s.Features = append(it.s.Features, v)
				it.featureLines = append(it.featureLines, fn.Line)
			}
		}
		for j, mn := range d.list(m, "models", "model names") {
			if v, ok := d.listString(mn, fmt.Sprintf("%s[%d]", m.field("models"), j)); ok {
				it.s.Models = append(it.s.Models, v)
			}
		}
		d.services = append(d.services, it)
	}
}

// listString returns the non-empty string of a list item, recording a
// problem otherwise.
func (d *decoder) listString(n *yaml.Node, field string) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" || strings.TrimSpace(n.Value) == "" {
		d.addf(n.Line, field, "expected a non-empty string; got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

// buildServices checks the services against the features of f (which
// buildFeatures has filled): unique valid names, a non-empty list of
// resolvable references without duplicates, all of one entity.
func (d *decoder) buildServices(f *File) {
	byName := make(map[string]*Service, len(d.services))
	for _, it := range d.services {
		s, m := it.s, it.m
		f.Services = append(f.Services, s)
		if d.checkName(m, "feature service", s.Name) {
			if first, dup := byName[s.Name]; dup {
				d.addf(m.lineOf("name"), m.field("name"), "feature service %q is already defined at line %d; service names are unique", s.Name, first.Line)
			} else {
				byName[s.Name] = s
			}
		}
		if len(s.Features) == 0 {
			if n := m.get("features"); n == nil || n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
				d.addf(m.lineOf("features"), m.field("features"), "required: at least one feature (name@version, or a bare name for the newest ready version)")
			}
			continue
		}
		entityOf := "" // the service's entity, from its first resolvable feature
		firstAt := ""
		for j, ref := range s.Features {
			field := fmt.Sprintf("%s[%d]", m.field("features"), j)
			line := it.featureLines[j]
			if k := slices.Index(s.Features[:j], ref); k >= 0 {
				d.addf(line, field, "feature %s is listed twice (also at %s[%d]); list it once", ref, m.field("features"), k)
				continue
			}
			ft, err := f.Feature(ref)
			if err != nil {
				d.addf(line, field, "%v", err)
				continue
			}
			ents := []string{ft.Entity}
			if !strings.Contains(ref, "@") {
				// A bare name may resolve to any of its versions at lookup
				// time (the newest ready one): all must share the entity.
				for _, v := range f.Features {
					if v.Name == ft.Name && !slices.Contains(ents, v.Entity) {
						ents = append(ents, v.Entity)
					}
				}
				if len(ents) > 1 {
					sort.Strings(ents)
					d.addf(line, field, "the versions of feature %s belong to entities %s; a bare name resolves to the newest ready version, so pin one as %s@N", ft.Name, strings.Join(ents, ", "), ft.Name)
					continue
				}
			}
			switch {
			case ft.Entity == "":
				// reported at the feature
			case entityOf == "":
				entityOf, firstAt = ft.Entity, fmt.Sprintf("%s (%s)", ref, field)
			case ft.Entity != entityOf:
				d.addf(line, field, "feature %s belongs to entity %s, but %s belongs to %s; a feature service serves one entity (one key per lookup and per spine row)", ref, ft.Entity, firstAt, entityOf)
			}
		}
		s.Entity = entityOf
	}
}

// ResolveReady resolves a feature reference as the lookup service does at
// request time: "name@N" is exactly version N; a bare name is the first of
// its versions, in File.Feature's preference order (not deprecated first,
// then newest), for which ready(id) holds, else what File.Feature picks
// (then not ready). ready nil means every version is ready, which makes
// ResolveReady equal to File.Feature. Errors are File.Feature's.
func (f *File) ResolveReady(ref string, ready func(id string) bool) (ft *Feature, isReady bool, err error) {
	def, err := f.Feature(ref)
	if err != nil {
		return nil, false, err
	}
	if ready == nil {
		return def, true, nil
	}
	if strings.Contains(ref, "@") {
		return def, ready(def.ID), nil
	}
	var vs []*Feature
	for _, v := range f.Features {
		if v.Name == def.Name {
			vs = append(vs, v)
		}
	}
	slices.SortStableFunc(vs, func(a, b *Feature) int {
		if a.Deprecated != b.Deprecated {
			if a.Deprecated {
				return 1
			}
			return -1
		}
		return b.Version - a.Version
	})
	for _, v := range vs {
		if ready(v.ID) {
			return v, true, nil
		}
	}
	return def, false, nil
}
