package ui

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/lineage"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/usage"
)

// Statuses of a feature version, as the search filter names them.
const (
	StatusReady         = "ready"
	StatusWarmingUp     = "warming up"
	StatusDeprecated    = "deprecated"
	StatusUnused        = "unused"
	StatusNotRegistered = "not registered"
)

// statuses in the order the filter lists them.
var statuses = []string{StatusReady, StatusWarmingUp, StatusDeprecated, StatusUnused, StatusNotRegistered}

// catalog is one consistent picture of everything the pages show, built
// from the feature file, the registry view, the live usage and the lineage
// graph (lineage.Build) at one time. Read-only once built.
type catalog struct {
	now       time.Time
	cfg       *config.File
	reg       *registry.View
	graph     *lineage.Graph
	consumers lineage.Consumers
	// usagePartial: built while the usage follower was still reading the
	// lookup log (usage.Live.CaughtUp): no version is called unused, and
	// the pages say the counts are partial.
	usagePartial bool

	features []*featureRow            // every version: file order, then the catalog's others by id
	byID     map[string]*featureRow   // name@version
	byName   map[string][]*featureRow // versions, oldest first
	owners   []string                 // sorted, for the filters
	tags     []string
	entities []string
}

// featureRow is one feature version as the search page lists it.
type featureRow struct {
	ID, Name    string
	Version     int
	Def         *config.Feature // nil: known only from the catalog
	Owner       string
	Description string
	Tags        []string
	Entity      string
	Source      string
	Topic       string
	Hash        string
	Status      string
	Deprecated  bool
	Registered  time.Time // zero: not registered
	Partitions  int
	Warming     int
	// Published is the newest publication any partition reported (zero:
	// none); Freshness is now minus it, or the monitor's figure.
	Published time.Time
	Freshness time.Duration
	HasFresh  bool
	Usage     usage.Summary
	Used      bool // Usage is known (read at least once)

	hay string // lower-cased text the search box matches
}

// buildCatalog draws the catalog as of now. Cost: linear in the objects of
// cfg, reg and the usage (dominated by lineage.Build).
func buildCatalog(o *Options, now time.Time) *catalog {
	c := &catalog{now: now, cfg: o.Config, reg: o.Registry, byID: map[string]*featureRow{}, byName: map[string][]*featureRow{}}
	var sums map[string]usage.Summary
	if o.Usage != nil {
		// Read before the counts: a catalog built complete has them all.
		c.usagePartial = !o.Usage.CaughtUp()
		c.consumers = o.Usage.ConsumerKeys()
		sums = o.Usage.Summaries(now)
	}
	c.graph = lineage.Build(o.Config, o.Registry, c.consumers)
	add := func(r *featureRow) {
		c.features = append(c.features, r)
		c.byID[r.ID] = r
		c.byName[r.Name] = append(c.byName[r.Name], r)
	}
	for _, f := range o.Config.Features {
		topic := "" // a derived feature reads other features, no topic
		if f.SourceRef != nil {
			topic = f.SourceRef.Topic
		}
		add(&featureRow{ID: f.ID, Name: f.Name, Version: f.Version, Def: f, Owner: f.Owner,
			Description: strings.TrimSpace(f.Description), Tags: f.Tags, Entity: f.Entity, Source: f.Source,
			Topic: topic, Hash: f.Hash, Deprecated: f.Deprecated})
	}
	for _, d := range o.Registry.Definitions() {
		if _, ok := c.byID[d.Feature]; ok {
			continue
		}
		name, v, _ := strings.Cut(d.Feature, "@")
		ver, _ := strconv.Atoi(v)
		r := &featureRow{ID: d.Feature, Name: name, Version: ver, Hash: d.Hash}
		for _, kv := range d.Fields {
			switch kv[0] {
			case "entity":
				r.Entity = kv[1]
			case "source":
				r.Source = kv[1]
			case "topic":
				r.Topic = kv[1]
			}
		}
		if m, ok := o.Registry.Meta(d.Feature); ok {
			r.Owner, r.Description, r.Tags, r.Deprecated = m.Owner, m.Description, m.Tags, m.Deprecated
		}
		add(r)
	}
	for _, vs := range c.byName {
		slices.SortFunc(vs, func(a, b *featureRow) int { return cmp.Compare(a.Version, b.Version) })
	}
	owners, tags, ents := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, r := range c.features {
		if d, ok := o.Registry.Definition(r.ID); ok {
			r.Registered = d.RegisteredAt
		}
		for _, s := range o.Registry.Statuses(r.ID) {
			r.Partitions++
			if s.State == registry.StateWarmingUp {
				r.Warming++
			}
			if s.UpdatedAt.After(r.Published) {
				r.Published = s.UpdatedAt
			}
		}
		if !r.Published.IsZero() {
			r.Freshness, r.HasFresh = max(now.Sub(r.Published), 0), true
		}
		if o.Monitor != nil {
			if m, ok := o.Monitor.Feature(r.ID); ok && m.Freshness != nil {
				r.Freshness, r.HasFresh = *m.Freshness, true
			}
		}
		r.Usage, r.Used = sums[r.ID]
		r.Status = c.status(r, o.Usage != nil && !c.usagePartial)
		owners[r.Owner], ents[r.Entity] = true, true
		for _, t := range r.Tags {
			tags[t] = true
		}
		r.hay = strings.ToLower(strings.Join(append([]string{r.ID, r.Description, r.Owner, r.Entity, r.Source, r.Topic}, r.Tags...), "\n"))
	}
	c.owners, c.tags, c.entities = sortedKeys(owners), sortedKeys(tags), sortedKeys(ents)
	return c
}

// status is the one word a version's state is shown with: warming up
// (some partition is bootstrapping) before deprecated, before unused
// (registered 30 days ago or more, and nobody read it in the 30 days before
// now: usage.Stats.Unused; only known with complete usage, not while the
// follower is still reading the lookup log: usage.Live.CaughtUp), before
// ready.
func (c *catalog) status(r *featureRow, withUsage bool) string {
	switch {
	case r.Warming > 0:
		return StatusWarmingUp
	case r.Deprecated:
		return StatusDeprecated
	case r.Registered.IsZero():
		return StatusNotRegistered
	}
	if withUsage {
		var st *usage.Stats
		if r.Used {
			st = &usage.Stats{LastUsed: r.Usage.LastUsed}
		}
		if st.Unused(r.Registered, c.now) {
			return StatusUnused
		}
	}
	return StatusReady
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// query is a search: the text and the filters, each "" for any.
type query struct {
	Q, Owner, Tag, Entity, Status string
}

// search returns the versions q selects, in catalog order. The text matches
// a case-insensitive substring of the id, description, owner, entity,
// source, topic or a tag, each word of it (all must match); the filters
// match exactly.
func (c *catalog) search(q query) []*featureRow {
	words := strings.Fields(strings.ToLower(q.Q))
	var out []*featureRow
	for _, r := range c.features {
		if q.Owner != "" && r.Owner != q.Owner || q.Entity != "" && r.Entity != q.Entity ||
			q.Status != "" && r.Status != q.Status || q.Tag != "" && !slices.Contains(r.Tags, q.Tag) {
			continue
		}
		ok := true
		for _, w := range words {
			if !strings.Contains(r.hay, w) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// plainWords says what a definition computes, e.g. "average of amount over
// the last 30 days, 1-day hops, per user, from topic transactions".
func plainWords(f *config.Feature) string {
	var b strings.Builder
	if d := f.Derived; d != nil {
		ids := make([]string, len(d.Inputs))
		for i, in := range d.Inputs {
			ids[i] = in.ID
		}
		b.WriteString("derived: " + d.Expr + ", from " + strings.Join(ids, ", ") + ", per " + f.Entity)
		return b.String()
	}
	agg := map[string]string{"count": "number of events", "sum": "sum of", "avg": "average of", "min": "smallest",
		"max": "largest", "last": "latest value of"}[f.Aggregation.String()]
	if agg == "" {
		agg = f.Aggregation.String() + " of"
	}
	b.WriteString(agg)
	if f.Field != "" {
		if f.Aggregation == aggregations.Count {
			b.WriteString(" with")
		}
		b.WriteString(" " + f.Field)
	}
	if f.Window.Lifetime() {
		b.WriteString(" over all time")
	} else {
		b.WriteString(" over the last " + spellDuration(f.Window.Size))
		b.WriteString(", " + hyphenDuration(f.Window.Hop) + " hops")
	}
	if f.Where != "" {
		b.WriteString(", counting events where " + f.Where)
	}
	if f.Bucket != "" {
		b.WriteString(", by " + f.Bucket + " (its " + strconv.Itoa(f.MaxBuckets) + " most frequent values, the others together as " + aggregations.OtherBucket + ")")
	}
	b.WriteString(", per " + f.Entity + ", from topic " + f.SourceRef.Topic)
	if f.TTL > 0 {
		b.WriteString("; expires when its newest event is older than " + spellDuration(f.TTL))
	}
	return b.String()
}

var units = []struct {
	ms   int64
	name string
}{{86400000, "day"}, {3600000, "hour"}, {60000, "minute"}, {1000, "second"}, {1, "millisecond"}}

// spellDuration spells ms in its largest whole unit: "30 days", "1 hour".
func spellDuration(ms int64) string {
	for _, u := range units {
		if ms%u.ms == 0 && ms >= u.ms {
			n := ms / u.ms
			if n == 1 {
				return "1 " + u.name
			}
			return strconv.FormatInt(n, 10) + " " + u.name + "s"
		}
	}
	return aggregations.FormatDuration(ms)
}

// hyphenDuration is spellDuration as an adjective: "1-day", "5-minute".
func hyphenDuration(ms int64) string {
	for _, u := range units {
		if ms%u.ms == 0 && ms >= u.ms {
			return strconv.FormatInt(ms/u.ms, 10) + "-" + u.name
		}
	}
	return aggregations.FormatDuration(ms)
}
