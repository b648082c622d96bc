package lineage

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// FeatureInfo is what the feature file says about a feature version, or,
// when it does not declare the version, what the catalog recorded of the
// running file (registry.FeatureMeta).
type FeatureInfo struct {
	Owner       string   `json:"owner"`
	Description string   `json:"description"`
	Tags        []string `json:"tags,omitempty"`
	Deprecated  bool     `json:"deprecated,omitempty"`
	ReplacedBy  string   `json:"replaced_by,omitempty"`
	Sunset      string   `json:"sunset,omitempty"` // YYYY-MM-DD
	// Retired: the catalog records the version as no longer in the
	// running feature file.
	Retired    bool        `json:"retired,omitempty"`
	Definition [][2]string `json:"definition"`
	Hash       string      `json:"hash"`
	// At is file:line, or for what the catalog recorded (no feature file
	// declares it) "registry (recorded TIME by WHO)".
	At string `json:"at"`
}

// ServiceInfo is what the feature file says about a feature service, with
// the versions its references resolve to now, or, when it does not declare
// the service, what the catalog recorded (resolved when recorded).
type ServiceInfo struct {
	Owner       string   `json:"owner"`
	Description string   `json:"description"`
	Entity      string   `json:"entity"`
	Features    []string `json:"features"` // as written
	Resolved    []string `json:"resolved"` // name@version, per Features
	Models      []string `json:"models,omitempty"`
	// Retired: the catalog records the service as no longer in the running
	// feature file.
	Retired bool `json:"retired,omitempty"`
	// At: as FeatureInfo.At.
	At string `json:"at"`
}

// Description is everything known about one node: from the feature file,
// the catalog, the consumers, and its neighbours in the graph.
type Description struct {
	Node       Node                 `json:"node"`
	Feature    *FeatureInfo         `json:"feature,omitempty"`
	Definition *registry.Definition `json:"registered,omitempty"`
	Statuses   []registry.Status    `json:"statuses,omitempty"`
	Service    *ServiceInfo         `json:"service,omitempty"`
	Dataset    *registry.Dataset    `json:"dataset,omitempty"`
	Model      *registry.Model      `json:"model,omitempty"`
	// Consumers are the lookups of a feature version per consumer.
	Consumers map[string]int64 `json:"consumers,omitempty"`
	// Upstream and Downstream are every node the node comes from and every
	// node that depends on it (transitively), in graph order.
	Upstream   []Node `json:"upstream"`
	Downstream []Node `json:"downstream"`
}

// Describe gathers what cfg (may be nil), the catalog v, the consumers c and
// the graph g (built from them) know about the node id.
func Describe(id string, g *Graph, cfg *config.File, v *registry.View, c Consumers) (Description, error) {
	up, err := g.Walk(id, Upstream)
	if err != nil {
		return Description{}, err
	}
	down, _ := g.Walk(id, Downstream)
	d := Description{Node: up.Nodes[0], Upstream: append([]Node{}, up.Nodes[1:]...), Downstream: append([]Node{}, down.Nodes[1:]...)}
	kind, name, _ := strings.Cut(id, ":")
	switch kind {
	case KindFeature:
		if cfg != nil {
			if f, err := cfg.Feature(name); err == nil {
				d.Feature = &FeatureInfo{Owner: f.Owner, Description: f.Description, Tags: f.Tags, Deprecated: f.Deprecated,
					Definition: f.Definition(), Hash: f.Hash, At: fmt.Sprintf("%s:%d", cfg.Path, f.Line)}
			}
		}
		if m, ok := v.Meta(name); ok && d.Feature == nil {
			d.Feature = &FeatureInfo{Owner: m.Owner, Description: m.Description, Tags: m.Tags, Deprecated: m.Deprecated,
				ReplacedBy: m.ReplacedBy, Sunset: m.Sunset, Retired: m.Retired,
				At: "registry (recorded " + m.RegisteredAt.Format(time.RFC3339) + " by " + m.RegisteredBy + ")"}
			if def, ok := v.Definition(name); ok {
				d.Feature.Definition, d.Feature.Hash = def.Fields, def.Hash
			}
		}
		if def, ok := v.Definition(name); ok {
			d.Definition = &def
			d.Statuses = v.Statuses(name)
		}
		d.Consumers = c[name]
	case KindService:
		if cfg != nil {
			if s, err := cfg.Service(name); err == nil {
				si := &ServiceInfo{Owner: s.Owner, Description: s.Description, Entity: s.Entity, Features: s.Features,
					Models: s.Models, At: fmt.Sprintf("%s:%d", cfg.Path, s.Line)}
				for _, ref := range s.Features {
					if f, _, err := cfg.ResolveReady(ref, v.Ready); err == nil {
						si.Resolved = append(si.Resolved, f.ID)
					}
				}
				d.Service = si
			}
		}
		if rs, ok := v.Service(name); ok && d.Service == nil {
			d.Service = &ServiceInfo{Owner: rs.Owner, Description: rs.Description, Entity: rs.Entity, Features: rs.Features,
				Resolved: rs.Resolved, Models: rs.Models, Retired: rs.Retired,
				At: "registry (recorded " + rs.RegisteredAt.Format(time.RFC3339) + " by " + rs.RegisteredBy + ")"}
		}
	case KindDataset:
		if ds, ok := v.Dataset(name); ok {
			d.Dataset = &ds
		}
	case KindModel:
		if m, ok := v.Model(name); ok {
			d.Model = &m
		}
	}
	return d, nil
}

// Fields renders the description as (label, value) lines for people.
func (d Description) Fields() [][2]string {
	var out [][2]string
	put := func(k, v string) {
		if v != "" {
			out = append(out, [2]string{k, v})
		}
	}
	put("node", d.Node.ID)
	put("owner", d.Node.Owner)
	if f := d.Feature; f != nil {
		put("description", f.Description)
		put("tags", strings.Join(f.Tags, ", "))
		if f.Deprecated {
			put("deprecated", "yes")
		}
		put("replaced by", f.ReplacedBy)
		put("sunset", f.Sunset)
		if f.Retired {
			put("retired", "yes (no longer in the running feature file)")
		}
		put("defined at", f.At)
		for _, kv := range f.Definition {
			put("  "+kv[0], kv[1])
		}
		put("hash", f.Hash)
	}
	if r := d.Definition; r != nil {
		put("registered", r.RegisteredAt.Format(time.RFC3339)+" by "+r.RegisteredBy+" (hash "+r.Hash+")")
		if d.Feature == nil {
			for _, kv := range r.Fields {
				put("  "+kv[0], kv[1])
			}
		} else if r.Hash != d.Feature.Hash {
			put("WARNING", "the feature file's definition differs from the registered one (see featurepipe plan)")
		}
		for _, s := range d.Statuses {
			put("status", fmt.Sprintf("%s/%d %s", s.Topic, s.Partition, s.State))
		}
	} else if d.Node.Kind == KindFeature {
		put("registered", "no (registered when a worker first runs it)")
	}
	if len(d.Consumers) > 0 {
		for _, name := range slices.Sorted(maps.Keys(d.Consumers)) {
			put("consumer", name+": "+strconv.FormatInt(d.Consumers[name], 10)+" lookups")
		}
	}
	if s := d.Service; s != nil {
		put("description", s.Description)
		put("entity", s.Entity)
		put("defined at", s.At)
		put("features", strings.Join(s.Features, ", "))
		put("resolved", strings.Join(s.Resolved, ", "))
		if s.Retired {
			put("retired", "yes (no longer in the running feature file)")
		}
		put("models", strings.Join(s.Models, ", "))
	}
	if ds := d.Dataset; ds != nil {
		put("description", ds.Description)
		put("created", ds.CreatedAt.Format(time.RFC3339)+" by "+ds.Actor)
		put("service", ds.Service)
		var fs []string
		for _, f := range ds.Features {
			fs = append(fs, f.Feature)
		}
		put("features", strings.Join(fs, ", "))
		put("rows", strconv.Itoa(ds.Rows))
		if ds.TimeRange != nil {
			put("time range", ds.TimeRange.Min.Format(time.RFC3339)+" .. "+ds.TimeRange.Max.Format(time.RFC3339))
		}
		put("point in time", ds.PointInTime)
		put("spine", ds.SpinePath+" (sha256 "+ds.SpineSHA256+")")
		put("location", ds.Location+" ("+ds.Format+")")
	}
	if m := d.Model; m != nil {
		put("description", m.Description)
		put("registered", m.RegisteredAt.Format(time.RFC3339)+" by "+m.Actor)
		put("dataset", m.Dataset)
		put("service", m.Service)
		put("service features", strings.Join(m.ServiceFeatures, ", "))
		for _, k := range slices.Sorted(maps.Keys(m.Metrics)) {
			put("metric "+k, strconv.FormatFloat(m.Metrics[k], 'g', -1, 64))
		}
		put("limitations", m.Limitations)
		put("uri", m.URI)
	}
	list := func(ns []Node) string {
		if len(ns) == 0 {
			return "-"
		}
		s := make([]string, len(ns))
		for i, n := range ns {
			s[i] = n.ID
		}
		return strings.Join(s, ", ")
	}
	put("upstream", list(d.Upstream))
	put("downstream", list(d.Downstream))
	return out
}
