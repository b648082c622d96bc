package lineage

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Dot renders the walk as a Graphviz digraph: one node per object (labelled
// with its id and owner), one edge per "feeds" (labelled with the lookups on
// feature → consumer edges), the root drawn bold.
func (s Sub) Dot() string {
	var b strings.Builder
	b.WriteString("digraph lineage {\n  rankdir=LR;\n  node [shape=box];\n")
	for _, n := range s.Nodes {
		label := n.ID
		if n.Owner != "" {
			label += "\nowner: " + n.Owner
		}
		attrs := "label=" + strconv.Quote(label)
		if n.ID == s.Root {
			attrs += ", style=bold"
		}
		if n.Deprecated {
			attrs += ", color=gray"
		}
		fmt.Fprintf(&b, "  %s [%s];\n", strconv.Quote(n.ID), attrs)
	}
	for _, e := range s.Edges {
		attrs := ""
		if e.Lookups > 0 {
			attrs = fmt.Sprintf(" [label=%q]", strconv.FormatInt(e.Lookups, 10)+" lookups")
		}
		fmt.Fprintf(&b, "  %s -> %s%s;\n", strconv.Quote(e.From), strconv.Quote(e.To), attrs)
	}
	b.WriteString("}\n")
	return b.String()
}

// Text renders the walk as indented trees from the root: what it comes
// from (upstream, each line fed by the lines below it) and what depends on
// it (downstream). A node reached twice is shown once in full, then as
// "(see above)".
func (s Sub) Text() string {
	nodes := map[string]Node{}
	for _, n := range s.Nodes {
		nodes[n.ID] = n
	}
	down, up := map[string][]Edge{}, map[string][]Edge{}
	for _, e := range s.Edges {
		down[e.From] = append(down[e.From], e)
		up[e.To] = append(up[e.To], e)
	}
	order := func(id string) int { k, _, _ := strings.Cut(id, ":"); return slices.Index(kinds, k) }
	for _, es := range down {
		slices.SortStableFunc(es, func(a, b Edge) int { return cmp.Compare(order(a.To), order(b.To)) })
	}
	for _, es := range up {
		slices.SortStableFunc(es, func(a, b Edge) int { return cmp.Compare(order(b.From), order(a.From)) })
	}
	var b strings.Builder
	b.WriteString(label(nodes[s.Root], 0) + "\n")
	tree := func(title string, next map[string][]Edge, far func(Edge) string) {
		if len(next[s.Root]) == 0 {
			return
		}
		b.WriteString(title + ":\n")
		shown := map[string]bool{s.Root: true}
		var walk func(id string, depth int)
		walk = func(id string, depth int) {
			for _, e := range next[id] {
				n := far(e)
				fmt.Fprintf(&b, "%s%s", strings.Repeat("  ", depth), label(nodes[n], e.Lookups))
				if shown[n] {
					b.WriteString(" (see above)\n")
					continue
				}
				b.WriteString("\n")
				shown[n] = true
				walk(n, depth+1)
			}
		}
		walk(s.Root, 1)
	}
	if s.Direction != Downstream {
		tree("upstream", up, func(e Edge) string { return e.From })
	}
	if s.Direction != Upstream {
		tree("downstream", down, func(e Edge) string { return e.To })
	}
	return b.String()
}

func label(n Node, lookups int64) string {
	var extra []string
	if n.Owner != "" && n.Kind != KindConsumer {
		extra = append(extra, "owner "+n.Owner)
	}
	if n.Deprecated {
		extra = append(extra, "deprecated")
	}
	if n.Kind == KindFeature && !n.InFile && n.Registered {
		extra = append(extra, "registered, not in the feature file")
	}
	if lookups > 0 {
		extra = append(extra, strconv.FormatInt(lookups, 10)+" lookups")
	}
	if len(extra) == 0 {
		return n.ID
	}
	return n.ID + " (" + strings.Join(extra, ", ") + ")"
}

// Text renders the plan for people: one block per change, breaking ones
// first, each with its dependents and whom to tell, then a summary line.
func (p Plan) Text() string {
	var b strings.Builder
	if len(p.Changes) == 0 {
		fmt.Fprintf(&b, "No changes: %s matches the catalog.\n", p.Config)
		return b.String()
	}
	marks := map[string]string{FeatureAdded: "+", VersionAdded: "+", ServiceAdded: "+", Removed: "-", ServiceRemoved: "-",
		Redefined: "!", ServiceChanged: "~", Deprecated: "~"}
	breaking := 0
	for _, c := range p.Changes {
		tag := ""
		if c.Breaking {
			tag = "  BREAKING"
			breaking++
		}
		fmt.Fprintf(&b, "%s %s %s%s\n", marks[c.Kind], c.Kind, c.Object, tag)
		for _, d := range c.Detail {
			fmt.Fprintf(&b, "    %s\n", d)
		}
		if len(c.Dependents) > 0 {
			b.WriteString("    dependents:\n")
			for _, n := range c.Dependents {
				fmt.Fprintf(&b, "      %s\n", label(n, 0))
			}
			fmt.Fprintf(&b, "    tell: %s\n", strings.Join(c.Owners, ", "))
		}
	}
	fmt.Fprintf(&b, "\nPlan: %d changes, %d breaking.\n", len(p.Changes), breaking)
	if p.Breaking {
		b.WriteString("Breaking changes have dependents (or redefine a version in place): add a new version instead, and tell the owners above.\n")
	}
	return b.String()
}
