// Package lineage is the catalog's graph and the impact of a change to the
// feature file (DESIGN.md, "The catalog"): which topics feed which sources,
// which feature versions are computed from them, which feature services
// bundle them, which datasets were built from them, which models were
// trained on those, and which consumers read each feature version.
//
//	topic:NAME → source:NAME → feature:NAME@V → service:NAME → dataset:NAME@V → model:NAME@V
//	                                          ↘ dataset:NAME@V (listed features)
//	                                          ↘ consumer:NAME (seen in the lookup log)
//	                                          ↘ feature:NAME@V (a derived feature reading it)
//
// The package does no I/O: Build takes a feature file, the catalog's
// registry.View and the consumers per feature version (Consumers), and Diff
// compares a feature file with them (plan.go). Reading those is the
// caller's job, so that the CLI, the lookup service and a web UI draw the
// same graph.
package lineage

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// Node kinds, the prefixes of node ids (kind:name).
const (
	KindTopic    = "topic"
	KindSource   = "source"
	KindFeature  = "feature"
	KindService  = "service"
	KindDataset  = "dataset"
	KindModel    = "model"
	KindConsumer = "consumer"
)

// kinds in graph order (upstream first).
var kinds = []string{KindTopic, KindSource, KindFeature, KindService, KindDataset, KindModel, KindConsumer}

// Anonymous is the consumer of a lookup that named none.
const Anonymous = "anonymous"

// Consumers is, per feature version (name@version), how many keys each
// consumer looked up (one lookup-log entry per key) over some recent window
// (the caller's choice: lineage and describe use all the lookup log
// retains, plan the last 7 days). A nil Consumers has none.
type Consumers map[string]map[string]int64

// Node is one object of the catalog.
type Node struct {
	ID    string `json:"id"` // kind:name
	Kind  string `json:"kind"`
	Name  string `json:"name"` // name or name@version
	Owner string `json:"owner,omitempty"`
	// InFile: the object is declared in the feature file the graph was
	// built from (sources, feature versions and services).
	InFile bool `json:"in_file,omitempty"`
	// Registered: the feature version, dataset or model is in the catalog.
	Registered bool `json:"registered,omitempty"`
	Deprecated bool `json:"deprecated,omitempty"`
}

// Edge is "From feeds To". Lookups is set on feature → consumer edges.
type Edge struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Lookups int64  `json:"lookups,omitempty"`
}

// Graph is the lineage graph. Read-only after Build; safe for concurrent
// reads.
type Graph struct {
	nodes map[string]*Node
	down  map[string][]Edge // from -> edges, sorted by To
	up    map[string][]Edge // to -> edges, sorted by From
}

// NodeID returns kind:name.
func NodeID(kind, name string) string { return kind + ":" + name }

// ParseNode checks a node id given by a user: a known kind, and name@version
// for feature, dataset and model.
func ParseNode(id string) (kind, name string, err error) {
	kind, name, ok := strings.Cut(id, ":")
	if !ok || !slices.Contains(kinds, kind) || name == "" {
		return "", "", fmt.Errorf("node %q: want KIND:NAME with KIND one of %s (e.g. feature:txn_count@1, service:fraud_scoring)", id, strings.Join(kinds, ", "))
	}
	if kind == KindFeature || kind == KindDataset || kind == KindModel {
		if _, _, err := registry.ParseRef(name); err != nil {
			return "", "", fmt.Errorf("node %q: a %s is named with its version, as %s:%s@1", id, kind, kind, strings.SplitN(name, "@", 2)[0])
		}
	}
	return kind, name, nil
}

// Build draws the graph of cfg (nil: the catalog alone), the catalog v and
// the consumers c (may be nil). Feature versions come from both the file
// and the catalog (a registered version no longer in the file keeps its
// topic and source from its registered definition, and its owner and
// deprecation from its recorded metadata); services from the file, else
// from the catalog's service records (the running file's, features as
// resolved when recorded), and from the datasets and models that name them;
// a service of cfg links, for a bare feature reference, the version it
// resolves to now (config.ResolveReady with v.Ready). Cost: linear in the
// objects of cfg, v and c.
func Build(cfg *config.File, v *registry.View, c Consumers) *Graph {
	g := &Graph{nodes: map[string]*Node{}, down: map[string][]Edge{}, up: map[string][]Edge{}}
	seen := map[[2]string]bool{}
	edge := func(e Edge) {
		k := [2]string{e.From, e.To}
		if seen[k] {
			return
		}
		seen[k] = true
		g.down[e.From] = append(g.down[e.From], e)
		g.up[e.To] = append(g.up[e.To], e)
	}
	if v == nil {
		v = registry.NewView()
	}
	if cfg != nil {
		for _, s := range cfg.Sources {
			g.node(KindTopic, s.Topic).InFile = true
			g.node(KindSource, s.Name).InFile = true
			edge(Edge{From: NodeID(KindTopic, s.Topic), To: NodeID(KindSource, s.Name)})
		}
		for _, f := range cfg.Features {
			n := g.node(KindFeature, f.ID)
			n.InFile, n.Owner, n.Deprecated = true, f.Owner, f.Deprecated
			if f.IsDerived() { // computed from other feature versions, not a source
				for _, in := range f.Derived.Inputs {
					g.node(KindFeature, in.ID)
					edge(Edge{From: NodeID(KindFeature, in.ID), To: n.ID})
				}
				continue
			}
			edge(Edge{From: NodeID(KindSource, f.Source), To: n.ID})
		}
	}
	for _, d := range v.Definitions() {
		n := g.node(KindFeature, d.Feature)
		n.Registered = true
		if n.InFile {
			continue
		}
		if m, ok := v.Meta(d.Feature); ok {
			n.Owner, n.Deprecated = m.Owner, m.Deprecated
		}
		var topic, source string
		for _, kv := range d.Fields {
			switch kv[0] {
			case "topic":
				topic = kv[1]
			case "source":
				source = kv[1]
			case "inputs": // a derived feature's input versions (config.Feature.Definition)
				for _, in := range strings.Split(kv[1], ",") {
					if in != "" {
						g.node(KindFeature, in)
						edge(Edge{From: NodeID(KindFeature, in), To: n.ID})
					}
				}
			}
		}
		if source != "" {
			g.node(KindSource, source)
			edge(Edge{From: NodeID(KindSource, source), To: n.ID})
			if topic != "" {
				g.node(KindTopic, topic)
				edge(Edge{From: NodeID(KindTopic, topic), To: NodeID(KindSource, source)})
			}
		}
	}
	models := v.Models()
	modelIDs := map[string][]string{} // model name -> its versions, as models orders them
	for _, m := range models {
		modelIDs[m.Name] = append(modelIDs[m.Name], m.ID())
	}
	// linkModels links service n to every version of the models it names.
	linkModels := func(n *Node, names []string) {
		for _, name := range names {
			for _, id := range modelIDs[name] {
				g.node(KindModel, id)
				edge(Edge{From: n.ID, To: NodeID(KindModel, id)})
			}
		}
	}
	if cfg != nil {
		for _, s := range cfg.Services {
			n := g.node(KindService, s.Name)
			n.InFile, n.Owner = true, s.Owner
			for _, ref := range s.Features {
				f, _, err := cfg.ResolveReady(ref, v.Ready)
				if err != nil {
					continue // impossible after Load: every reference resolves
				}
				g.node(KindFeature, f.ID)
				edge(Edge{From: NodeID(KindFeature, f.ID), To: n.ID})
			}
			linkModels(n, s.Models)
		}
	}
	// The services the running feature file declares, as the catalog
	// records them (registry.RecordFile), unless cfg declares them: their
	// features as resolved when recorded. A retired service (no longer
	// running) keeps its node and models but links no feature.
	for _, s := range v.Services() {
		if cfg != nil {
			if _, err := cfg.Service(s.Name); err == nil {
				continue
			}
		}
		n := g.node(KindService, s.Name)
		n.Owner = s.Owner
		if !s.Retired {
			for _, id := range s.Resolved {
				g.node(KindFeature, id)
				edge(Edge{From: NodeID(KindFeature, id), To: n.ID})
			}
		}
		linkModels(n, s.Models)
	}
	for _, d := range v.Datasets() {
		n := g.node(KindDataset, d.ID())
		n.Registered, n.Owner = true, d.Owner
		for _, f := range d.Features {
			g.node(KindFeature, f.Feature)
			edge(Edge{From: NodeID(KindFeature, f.Feature), To: n.ID})
		}
		if d.Service != "" {
			g.node(KindService, d.Service)
			edge(Edge{From: NodeID(KindService, d.Service), To: n.ID})
		}
	}
	for _, m := range models {
		n := g.node(KindModel, m.ID())
		n.Registered, n.Owner = true, m.Owner
		g.node(KindDataset, m.Dataset)
		edge(Edge{From: NodeID(KindDataset, m.Dataset), To: n.ID})
		if m.Service != "" {
			g.node(KindService, m.Service)
			edge(Edge{From: NodeID(KindService, m.Service), To: n.ID})
		}
	}
	for fid, byConsumer := range c {
		for name, lookups := range byConsumer {
			g.node(KindFeature, fid)
			cn := g.node(KindConsumer, name)
			cn.Owner = name // until tokens carry owners, a consumer answers for itself
			edge(Edge{From: NodeID(KindFeature, fid), To: cn.ID, Lookups: lookups})
		}
	}
	for _, es := range g.down {
		slices.SortFunc(es, func(a, b Edge) int { return strings.Compare(a.To, b.To) })
	}
	for _, es := range g.up {
		slices.SortFunc(es, func(a, b Edge) int { return strings.Compare(a.From, b.From) })
	}
	return g
}

// node returns the node kind:name, adding it if absent.
func (g *Graph) node(kind, name string) *Node {
	id := NodeID(kind, name)
	n, ok := g.nodes[id]
	if !ok {
		n = &Node{ID: id, Kind: kind, Name: name}
		g.nodes[id] = n
	}
	return n
}

// Node returns the node with the given id.
func (g *Graph) Node(id string) (Node, bool) {
	n, ok := g.nodes[id]
	if !ok {
		return Node{}, false
	}
	return *n, true
}

// Nodes returns every node, in graph order (topics first), then by id.
func (g *Graph) Nodes() []Node {
	out := make([]Node, 0, len(g.nodes))
	for _, n := range g.nodes {
		out = append(out, *n)
	}
	sortNodes(out)
	return out
}

func sortNodes(ns []Node) {
	slices.SortFunc(ns, func(a, b Node) int {
		return cmp.Or(cmp.Compare(slices.Index(kinds, a.Kind), slices.Index(kinds, b.Kind)), strings.Compare(a.ID, b.ID))
	})
}

// Direction of a walk.
type Direction string

// Directions.
const (
	Upstream   Direction = "upstream"
	Downstream Direction = "downstream"
	Both       Direction = "both"
)

// Sub is the part of a graph reached from Root.
type Sub struct {
	Root      string    `json:"root"`
	Direction Direction `json:"direction"`
	Nodes     []Node    `json:"nodes"` // Root first, then graph order
	Edges     []Edge    `json:"edges"` // sorted by from, to
}

// Walk returns the nodes reachable from id in direction d (transitively)
// and the edges between them on the way. An unknown id is an error listing
// the known ids of its kind.
func (g *Graph) Walk(id string, d Direction) (Sub, error) {
	root, ok := g.nodes[id]
	if !ok {
		kind, _, _ := strings.Cut(id, ":")
		var have []string
		for _, n := range g.Nodes() {
			if n.Kind == kind {
				have = append(have, n.ID)
			}
		}
		list := "none is known"
		if len(have) > 0 {
			list = "known: " + strings.Join(have[:min(len(have), 20)], ", ")
		}
		return Sub{}, fmt.Errorf("%s is not in the catalog or the feature file; %s", id, list)
	}
	sub := Sub{Root: id, Direction: d}
	reached := map[string]bool{id: true}
	var edges []Edge
	walk := func(next map[string][]Edge, far func(Edge) string) {
		queue := []string{id}
		for len(queue) > 0 {
			cur := queue[0]
			queue = queue[1:]
			for _, e := range next[cur] {
				edges = append(edges, e)
				if n := far(e); !reached[n] {
					reached[n] = true
					queue = append(queue, n)
				}
			}
		}
	}
	if d == Downstream || d == Both {
		walk(g.down, func(e Edge) string { return e.To })
	}
	if d == Upstream || d == Both {
		walk(g.up, func(e Edge) string { return e.From })
	}
	for n := range reached {
		if n != id {
			sub.Nodes = append(sub.Nodes, *g.nodes[n])
		}
	}
	sortNodes(sub.Nodes)
	sub.Nodes = append([]Node{*root}, sub.Nodes...)
	slices.SortFunc(edges, func(a, b Edge) int { return cmp.Or(strings.Compare(a.From, b.From), strings.Compare(a.To, b.To)) })
	sub.Edges = slices.CompactFunc(edges, func(a, b Edge) bool { return a.From == b.From && a.To == b.To })
	return sub, nil
}

// Dependents returns the derived features, services, datasets, models and
// consumers downstream of id (transitively), in graph order; none for an
// unknown id. (A feature's only downstream features are derived ones.)
func (g *Graph) Dependents(id string) []Node {
	sub, err := g.Walk(id, Downstream)
	if err != nil {
		return nil
	}
	var out []Node
	for _, n := range sub.Nodes[1:] {
		switch n.Kind {
		case KindFeature, KindService, KindDataset, KindModel, KindConsumer:
			out = append(out, n)
		}
	}
	return out
}
