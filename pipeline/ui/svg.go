package ui

import (
	"fmt"
	"html"
	"html/template"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/pipeline/lineage"
	"github.com/featurepipe/featurepipe/pipeline/usage"
)

// The SVGs are drawn here, on the server, as text: every name in them goes
// through html.EscapeString, so the result is safe to embed as
// template.HTML.

// chartHours is the span of the usage chart: the last 7 days, by hour.
const chartHours = usage.LiveHours

// chartSeries is how many consumers get their own line (the busiest);
// the total line covers everyone.
const chartSeries = 5

// palette has enough contrast on white for lines and text (WCAG AA for
// large graphics).
var palette = []string{"#1f5fbf", "#b8430b", "#18794e", "#8e3fb3", "#a1233f", "#5c6b00"}

var esc = html.EscapeString

// usageSVG draws lookups per hour over the last chartHours hours: one line
// for all consumers and one per busiest consumer, with a day grid.
func usageSVG(st *usage.LiveStats, now time.Time) template.HTML {
	const w, h, left, right, top, bottom = 760, 240, 48, 12, 12, 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="usage-title usage-desc" data-chart="usage">`, w, h)
	b.WriteString(`<title id="usage-title">Lookups per hour over the last 7 days, per consumer</title>`)
	if st == nil {
		b.WriteString(`<desc id="usage-desc">No lookups of this version in the lookup log.</desc>`)
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="empty">No lookups of this version in the lookup log yet.</text></svg>`, left, h/2)
		return template.HTML(b.String())
	}
	series := append([]usage.Series{st.Total}, st.Consumers[:min(len(st.Consumers), chartSeries)]...)
	var peak int64
	for _, hc := range st.Total.Hours {
		peak = max(peak, hc.Lookups)
	}
	peak = niceCeil(peak)
	fmt.Fprintf(&b, `<desc id="usage-desc">%s lookups in total; the busiest hour had %s.</desc>`, num(st.Total.Lookups), num(maxLookups(st.Total)))
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	n := len(st.Total.Hours)
	x := func(i int) float64 { return float64(left) + pw*float64(i)/float64(max(n-1, 1)) }
	y := func(v int64) float64 { return float64(top) + ph - ph*float64(v)/float64(peak) }
	// grid: 4 horizontal lines, one vertical per day (at midnight UTC)
	for i := 0; i <= 4; i++ {
		v := peak * int64(i) / 4
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/><text class="axis" x="%d" y="%.1f" text-anchor="end">%s</text>`,
			left, w-right, y(v), y(v), left-6, y(v)+4, num(v))
	}
	for i, hc := range st.Total.Hours {
		if hc.Hour.Hour() == 0 {
			fmt.Fprintf(&b, `<line class="grid" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/><text class="axis" x="%.1f" y="%d" text-anchor="middle">%s</text>`,
				x(i), x(i), top, h-bottom, x(i), h-bottom+16, hc.Hour.Format("Jan 2"))
		}
	}
	fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d" text-anchor="end">now (%s)</text>`, w-right, h-4, now.UTC().Format("15:04 UTC"))
	for si, s := range series {
		var pts strings.Builder
		for i, hc := range s.Hours {
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(i), y(hc.Lookups))
		}
		name, class := s.Consumer, "line"
		if si == 0 {
			name, class = "all consumers", "line total"
		}
		fmt.Fprintf(&b, `<polyline class="%s" data-consumer="%s" fill="none" stroke="%s" stroke-width="%d" points="%s"><title>%s: %s lookups</title></polyline>`,
			class, esc(s.Consumer), palette[si%len(palette)], map[bool]int{true: 3, false: 2}[si == 0], strings.TrimSpace(pts.String()), esc(name), num(s.Lookups))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func maxLookups(s usage.Series) int64 {
	var m int64
	for _, hc := range s.Hours {
		m = max(m, hc.Lookups)
	}
	return m
}

// niceCeil returns the top of the chart's scale for a peak of n: four
// grid steps of 1, 2 or 5 times a power of ten (at least 4 in all).
func niceCeil(n int64) int64 {
	step := max((n+3)/4, 1)
	p := int64(1)
	for p*10 < step {
		p *= 10
	}
	for _, m := range []int64{1, 2, 5, 10} {
		if m*p >= step {
			return 4 * m * p
		}
	}
	return 40 * p
}

// lineage graph layout
const (
	colW, nodeW, nodeH, gapY, maxPerCol = 176, 156, 30, 12, 8
	graphPad                            = 8
)

var kindOrder = []string{lineage.KindTopic, lineage.KindSource, lineage.KindFeature, lineage.KindService, lineage.KindDataset, lineage.KindModel, lineage.KindConsumer}

// lineageSVG draws a walk as columns of nodes, upstream on the left (topic,
// source, feature, service, dataset, model, consumer), each node a link to
// its page, the root emphasised; a column shows at most maxPerCol nodes and
// says how many more there are.
func lineageSVG(c *catalog, sub lineage.Sub) template.HTML {
	cols := map[string][]lineage.Node{}
	for _, n := range sub.Nodes {
		cols[n.Kind] = append(cols[n.Kind], n)
	}
	var kinds []string
	for _, k := range kindOrder {
		if len(cols[k]) > 0 {
			kinds = append(kinds, k)
		}
	}
	type pos struct{ x, y float64 }
	at := map[string]pos{}
	rows := 0
	for _, k := range kinds {
		ns := cols[k]
		// the root first in its column, then the rest as the walk sorted them
		slices.SortStableFunc(ns, func(a, b lineage.Node) int {
			return boolInt(b.ID == sub.Root) - boolInt(a.ID == sub.Root)
		})
		cols[k] = ns
		rows = max(rows, min(len(ns), maxPerCol+1))
	}
	w := graphPad*2 + len(kinds)*colW - (colW - nodeW)
	h := graphPad*2 + 18 + rows*(nodeH+gapY) - gapY
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="lineage" viewBox="0 0 %d %d" width="%d" role="img" aria-labelledby="lineage-title" data-root="%s">`, w, h, w, esc(sub.Root))
	fmt.Fprintf(&b, `<title id="lineage-title">Lineage of %s: %d objects upstream and downstream</title>`, esc(sub.Root), len(sub.Nodes)-1)
	var nodes strings.Builder
	for ci, k := range kinds {
		x := float64(graphPad + ci*colW)
		fmt.Fprintf(&nodes, `<text class="col" x="%.0f" y="%d">%s</text>`, x, graphPad+10, esc(k))
		for i, n := range cols[k] {
			y := float64(graphPad + 18 + i*(nodeH+gapY))
			if i == maxPerCol && len(cols[k]) > maxPerCol+1 {
				fmt.Fprintf(&nodes, `<g class="node more"><rect x="%.0f" y="%.0f" width="%d" height="%d" rx="4"/><text x="%.0f" y="%.0f">+%d more</text></g>`,
					x, y, nodeW, nodeH, x+8, y+19, len(cols[k])-maxPerCol)
				break
			}
			at[n.ID] = pos{x, y}
			l := c.nodeLink(n)
			label := n.Name
			if len(label) > 22 {
				label = label[:21] + "…"
			}
			class := "node kind-" + n.Kind
			if n.ID == sub.Root {
				class += " root"
			}
			if n.Deprecated {
				class += " deprecated"
			}
			g := fmt.Sprintf(`<g class="%s" data-node="%s"><rect x="%.0f" y="%.0f" width="%d" height="%d" rx="4"/><text x="%.0f" y="%.0f">%s</text><title>%s %s</title></g>`,
				class, esc(n.ID), x, y, nodeW, nodeH, x+8, y+19, esc(label), esc(n.Kind), esc(n.Name))
			if l.URL != "" && n.ID != sub.Root {
				fmt.Fprintf(&nodes, `<a href="%s">%s</a>`, esc(l.URL), g)
			} else {
				nodes.WriteString(g)
			}
		}
	}
	for _, e := range sub.Edges {
		from, ok1 := at[e.From]
		to, ok2 := at[e.To]
		if !ok1 || !ok2 {
			continue
		}
		x1, y1, x2, y2 := from.x+nodeW, from.y+nodeH/2, to.x, to.y+nodeH/2
		mid := (x1 + x2) / 2
		fmt.Fprintf(&b, `<path class="edge" data-from="%s" data-to="%s" d="M%.0f %.0f C%.0f %.0f %.0f %.0f %.0f %.0f"/>`,
			esc(e.From), esc(e.To), x1, y1, mid, y1, mid, y2, x2, y2)
	}
	b.WriteString(nodes.String())
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// distributionSVG draws monitoring's value distribution now against the
// training baseline, one pair of bars per bucket; "" without buckets.
func distributionSVG(now, base []Bucket) template.HTML {
	n := max(len(now), len(base))
	if n == 0 {
		return ""
	}
	const h, top, bottom, barW, gap = 180, 10, 34, 14, 10
	w := 48 + n*(2*barW+gap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="Value distribution now (dark) and at training time (light)">`, w, h)
	ph := float64(h - top - bottom)
	peak := 0.0
	for _, bs := range [][]Bucket{now, base} {
		for _, x := range bs {
			peak = max(peak, x.Share)
		}
	}
	if peak == 0 {
		peak = 1
	}
	for i := 0; i < n; i++ {
		x := 40 + i*(2*barW+gap)
		for j, bs := range [][]Bucket{now, base} {
			if i >= len(bs) {
				continue
			}
			bh := ph * bs[i].Share / peak
			fmt.Fprintf(&b, `<rect class="%s" x="%d" y="%.1f" width="%d" height="%.1f"><title>%s ≤ %s: %s</title></rect>`,
				[]string{"now", "baseline"}[j], x+j*barW, float64(top)+ph-bh, barW, bh, []string{"now", "baseline"}[j],
				strconv.FormatFloat(bs[i].Upper, 'g', 4, 64), strconv.FormatFloat(bs[i].Share*100, 'f', 1, 64)+"%")
		}
		ref := now
		if len(base) > len(ref) {
			ref = base
		}
		label := "≤" + strconv.FormatFloat(ref[i].Upper, 'g', 3, 64)
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d" text-anchor="middle">%s</text>`, x+barW, h-bottom+14, esc(label))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
