package lineage

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// Change kinds of a plan.
const (
	FeatureAdded   = "feature_added"   // a feature name the catalog has no version of
	VersionAdded   = "version_added"   // a new version of a registered feature
	Redefined      = "redefined"       // a registered version whose definition changed in place
	Deprecated     = "deprecated"      // a registered version marked deprecated
	Removed        = "removed"         // a registered version no longer in the file
	ServiceAdded   = "service_added"   // a service new to the current file and the catalog
	ServiceChanged = "service_changed" // a service whose feature list changed
	ServiceRemoved = "service_removed" // a service of the current file or the catalog no longer in the file
)

// Change is one difference between the new feature file and what is
// registered and running, with what depends on it.
type Change struct {
	Kind   string `json:"kind"`
	Object string `json:"object"` // node id: feature:NAME@V or service:NAME
	// Detail says what changed (for a redefinition: each field, registered
	// and now).
	Detail []string `json:"detail,omitempty"`
	// Dependents are the services, datasets, models and consumers
	// downstream of Object, and Owners their owners (whom to tell),
	// sorted and unique.
	Dependents []Node   `json:"dependents"`
	Owners     []string `json:"owners"`
	// Breaking: the change removes or redefines something with
	// dependents, or redefines a version in place (which workers refuse).
	Breaking bool `json:"breaking"`
}

// Plan is the result of Diff.
type Plan struct {
	Config   string   `json:"config"`
	Changes  []Change `json:"changes"`
	Breaking bool     `json:"breaking"` // some change is Breaking
}

// Diff compares the feature file next with the catalog v, like terraform
// plan. current is the feature file running now, an override: nil (the
// usual case) takes the running file's services, owners and deprecations
// from the catalog, where every worker start records them
// (registry.RecordFile); the services known are then those recorded and not
// retired, plus those the catalog's datasets and models name (with the
// features the newest model recorded when no service record has them). A
// catalog written before services were recorded has only the latter.
// consumers are the lookups per feature version and consumer over the
// window the caller chose (plan: 7 days).
//
// Feature versions: in next but not registered → FeatureAdded or
// VersionAdded; registered with another hash → Redefined (always
// Breaking: a definition never changes under one version, workers refuse
// it); registered but absent from next → Removed (Breaking when it has
// dependents; only a version still running, per current or, without it,
// per the catalog's metadata: one removed earlier stays registered, marked
// retired, and is not reported again); deprecated in next and not in the
// running file (current, else the catalog's metadata) → Deprecated. Services: absent from next → ServiceRemoved (Breaking with
// dependents); another feature list → ServiceChanged (Breaking when models
// or datasets were built from it, since they were trained on the old
// list); new → ServiceAdded. Removing a feature that next's services still
// list is caught earlier: config.Load refuses the file.
func Diff(next *config.File, v *registry.View, current *config.File, consumers Consumers) Plan {
	if v == nil {
		v = registry.NewView()
	}
	g := Build(current, v, consumers)
	p := Plan{Config: next.Path, Changes: []Change{}}
	add := func(c Change, breakIfDependents bool) {
		c.Dependents = g.Dependents(c.Object)
		if c.Dependents == nil {
			c.Dependents = []Node{}
		}
		c.Owners = owners(c.Dependents)
		c.Breaking = c.Breaking || breakIfDependents && len(c.Dependents) > 0
		p.Breaking = p.Breaking || c.Breaking
		p.Changes = append(p.Changes, c)
	}
	registered := map[string]registry.Definition{}
	names := map[string]bool{}
	for _, d := range v.Definitions() {
		registered[d.Feature] = d
		n, _, _ := strings.Cut(d.Feature, "@")
		names[n] = true
	}
	inNext := map[string]bool{}
	for _, f := range next.Features {
		inNext[f.ID] = true
		id := NodeID(KindFeature, f.ID)
		d, ok := registered[f.ID]
		switch {
		case !ok && !names[f.Name]:
			add(Change{Kind: FeatureAdded, Object: id, Detail: []string{fmt.Sprintf("new feature, owner %s (%s:%d)", f.Owner, next.Path, f.Line)}}, false)
		case !ok:
			add(Change{Kind: VersionAdded, Object: id, Detail: []string{fmt.Sprintf("new version, computed side by side with the registered ones (%s:%d)", next.Path, f.Line)}}, false)
		case d.Hash != f.Hash:
			add(Change{Kind: Redefined, Object: id, Detail: redefinition(d, f, next.Path), Breaking: true}, true)
		}
		if ok && f.Deprecated {
			was := false
			if current != nil {
				if cf, err := current.Feature(f.ID); err == nil {
					was = cf.Deprecated
				}
			} else if m, ok := v.Meta(f.ID); ok {
				was = m.Deprecated
			}
			if !was {
				add(Change{Kind: Deprecated, Object: id, Detail: []string{"deprecated: lookups keep working; tell its readers to move"}}, false)
			}
		}
	}
	for _, d := range v.Definitions() {
		if current != nil {
			if _, err := current.Feature(d.Feature); err != nil {
				continue // removed before: the running file no longer has it
			}
		} else if m, ok := v.Meta(d.Feature); ok && m.Retired {
			continue // removed before, as the catalog records
		}
		if !inNext[d.Feature] {
			add(Change{Kind: Removed, Object: NodeID(KindFeature, d.Feature),
				Detail: []string{fmt.Sprintf("registered %s by %s, not in %s", d.RegisteredAt.Format("2006-01-02"), d.RegisteredBy, next.Path)}}, true)
		}
	}
	// Services before: the current file's, else those the catalog records
	// as running, else those its datasets and models name (features as the
	// newest model registered on them recorded). retired: removed earlier.
	before := map[string][]string{}
	known := map[string]bool{}
	retired := map[string]bool{}
	if current != nil {
		for _, s := range current.Services {
			before[s.Name], known[s.Name] = s.Features, true
		}
	} else {
		for _, s := range v.Services() {
			if s.Retired {
				retired[s.Name] = true
				continue
			}
			before[s.Name], known[s.Name] = s.Features, true
		}
	}
	for _, d := range v.Datasets() {
		known[d.Service] = known[d.Service] || d.Service != "" && !retired[d.Service]
	}
	for _, m := range v.Models() { // newest first
		if m.Service == "" || retired[m.Service] {
			continue
		}
		known[m.Service] = true
		if _, ok := before[m.Service]; !ok && len(m.ServiceFeatures) > 0 {
			before[m.Service] = m.ServiceFeatures
		}
	}
	for _, s := range next.Services {
		id := NodeID(KindService, s.Name)
		old, had := before[s.Name]
		switch {
		case !known[s.Name]:
			detail := []string{fmt.Sprintf("new service, owner %s: %s", s.Owner, strings.Join(s.Features, ", "))}
			if current == nil && !v.HasFileRecords() {
				detail = append(detail, "(the catalog records no running services yet: no worker that records them has started; give the running feature file with --current to compare services with it)")
			}
			add(Change{Kind: ServiceAdded, Object: id, Detail: detail}, false)
		case had && !sameSet(old, s.Features):
			c := Change{Kind: ServiceChanged, Object: id, Detail: listDiff(old, s.Features)}
			add(c, false)
			last := &p.Changes[len(p.Changes)-1]
			for _, n := range last.Dependents {
				if n.Kind == KindModel || n.Kind == KindDataset {
					last.Breaking, p.Breaking = true, true
				}
			}
		}
	}
	var gone []string
	for name, ok := range known {
		if _, err := next.Service(name); ok && err != nil {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		add(Change{Kind: ServiceRemoved, Object: NodeID(KindService, name), Detail: []string{"not in " + next.Path}}, true)
	}
	slices.SortStableFunc(p.Changes, func(a, b Change) int {
		return cmp.Or(cmpBool(b.Breaking, a.Breaking), strings.Compare(a.Object, b.Object))
	})
	return p
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// redefinition lists the fields of f that differ from the registered d.
func redefinition(d registry.Definition, f *config.Feature, path string) []string {
	was := map[string]string{}
	for _, kv := range d.Fields {
		was[kv[0]] = kv[1]
	}
	var out []string
	for _, kv := range f.Definition() {
		if old := was[kv[0]]; old != kv[1] {
			out = append(out, fmt.Sprintf("%s: registered %q, now %q", kv[0], old, kv[1]))
		}
	}
	return append(out, fmt.Sprintf("refused: a definition never changes under one version; bump the version (%s@%d) at %s:%d",
		f.Name, f.Version+1, path, f.Line))
}

func owners(ns []Node) []string {
	out := []string{}
	for _, n := range ns {
		if n.Owner != "" && !slices.Contains(out, n.Owner) {
			out = append(out, n.Owner)
		}
	}
	slices.Sort(out)
	return out
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// listDiff describes how the list b differs from a.
func listDiff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, "- "+x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			out = append(out, "+ "+x)
		}
	}
	return out
}
