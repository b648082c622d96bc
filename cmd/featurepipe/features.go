package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	featureusage "github.com/featurepipe/featurepipe/pipeline/usage"
	"github.com/featurepipe/featurepipe/schemas"
)

// featureInfo is one row of `featurepipe features`.
type featureInfo struct {
	Name        string   `json:"name"`
	Version     int      `json:"version"`
	Status      string   `json:"status"` // ready | warming_up | deprecated | unregistered | unknown
	Deprecated  bool     `json:"deprecated"`
	ReplacedBy  string   `json:"replaced_by,omitempty"` // a deprecated version's replacement, name@version
	Sunset      string   `json:"sunset,omitempty"`      // a deprecated version's sunset date, YYYY-MM-DD
	Entity      string   `json:"entity"`
	Source      string   `json:"source"`
	Aggregation string   `json:"aggregation"`
	Field       string   `json:"field,omitempty"`
	Window      string   `json:"window"`
	Hop         string   `json:"hop"`
	Owner       string   `json:"owner"`
	Description string   `json:"description"`
	Tags        []string `json:"tags,omitempty"`
	Hash        string   `json:"hash"`
	// From the registry (with --brokers).
	Registered     *time.Time `json:"registered_at,omitempty"`
	Partitions     int        `json:"partitions,omitempty"`
	WarmingUp      int        `json:"partitions_warming_up,omitempty"`
	LastPublished  *time.Time `json:"last_published_at,omitempty"`
	FreshnessSecs  *float64   `json:"freshness_seconds,omitempty"`
	RegistryDiffer bool       `json:"registered_definition_differs,omitempty"`
	// From the snapshot store (with --snapshots): the newest snapshot
	// holding this version's state with its current definition.
	Snapshot   string     `json:"snapshot,omitempty"`
	SnapshotAt *time.Time `json:"snapshot_at,omitempty"`
	// From the lookup log (with --brokers): who read this version, and
	// whether nobody did for 30 days (see package usage). Usage is absent
	// for a version nobody read in the log.
	Usage  *featureusage.Stats `json:"usage,omitempty"`
	Unused *bool               `json:"unused,omitempty"`
}

func runFeatures(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("features", "[--config F] [--brokers B] [--snapshots DIR|s3://bucket/prefix] [--search TEXT] [--owner O] [--tag T] [--unused] [--services] [--json]", stderr)
	cfgPath := fs.String("config", "", "feature file (default: the demo feature file, schemas/demo.yaml)")
	brokersFlag := fs.String("brokers", "", "Kafka brokers: adds registration, status and freshness from the registry")
	snapDir := fs.String("snapshots", "", "snapshot directory or s3://bucket/prefix: adds the newest snapshot of each version")
	asJSON := fs.Bool("json", false, "print JSON (one array) for scripts")
	search := fs.String("search", "", "only versions whose name, description, tags or owner contain TEXT (case-insensitive)")
	owner := fs.String("owner", "", "only versions owned by O (case-insensitive)")
	tag := fs.String("tag", "", "only versions tagged T (case-insensitive)")
	unusedOnly := fs.Bool("unused", false, "only versions nobody looked up in the last 30 days (needs --brokers: read from the lookup log)")
	services := fs.Bool("services", false, "list the feature services instead: their features as listed and the version each resolves to (with --brokers: the newest ready version, as lookups resolve a bare name)")
	if err := parse(fs, args); err != nil {
		return err
	}
	var cfg *config.File
	var err error
	if *cfgPath == "" {
		cfg, err = config.LoadFS(schemas.Files, "demo.yaml")
	} else {
		cfg, err = config.Load(*cfgPath)
	}
	if err != nil {
		return err
	}
	if *unusedOnly && *brokersFlag == "" {
		return usagef("--unused needs --brokers: usage is read from the lookup log")
	}
	var view *registry.View
	var used map[string]*featureusage.Stats
	now := time.Now()
	if *brokersFlag != "" {
		brokers, err := kafka.ParseBrokers(*brokersFlag)
		if err != nil {
			return usagef("%v", err)
		}
		conn := kafka.ConnOf(brokers, cfg)
		if err := checkKafka(ctx, conn); err != nil {
			return err
		}
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if view, err = registry.Load(lctx, conn, cfg.Kafka.RegistryTopic, nil); err != nil {
			return fmt.Errorf("read the registry %s: %w", cfg.Kafka.RegistryTopic, err)
		}
		if !*services {
			uctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			if used, err = featureusage.Read(uctx, conn, cfg.Kafka.LookupLogTopic, now, nil); err != nil {
				return err
			}
		}
	}
	if *services {
		return runServices(cfg, view, *asJSON, stdout)
	}
	rows := describeFeatures(cfg, view, now)
	if *brokersFlag != "" {
		addUsage(rows, used, now)
	}
	if *snapDir != "" {
		snaps, err := openSnapshots(ctx, *snapDir, 0, false)
		if err != nil {
			return err
		}
		ms, problems, err := snaps.List(ctx)
		if err != nil {
			return fmt.Errorf("list snapshots in %s: %w", *snapDir, err)
		}
		for _, p := range problems {
			fmt.Fprintf(stderr, "skipping corrupt snapshot: %v\n", p)
		}
		addSnapshots(rows, cfg, ms)
	}
	rows = filterFeatures(rows, featureFilter{search: *search, owner: *owner, tag: *tag, unused: *unusedOnly})
	if *asJSON {
		if rows == nil {
			rows = []featureInfo{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	withUsage := *brokersFlag != ""
	header := "FEATURE\tSTATUS\tENTITY\tSOURCE\tAGGREGATION\tWINDOW\tOWNER\tFRESHNESS\tSNAPSHOT"
	if withUsage {
		header += "\tCONSUMERS (7d keys)\tLAST USED"
	}
	fmt.Fprintln(tw, header+"\tDESCRIPTION")
	for _, r := range rows {
		agg := r.Aggregation
		if r.Field != "" {
			agg += "(" + r.Field + ")"
		}
		fresh := "-"
		if r.FreshnessSecs != nil {
			fresh = (time.Duration(*r.FreshnessSecs * float64(time.Second))).Round(time.Second).String()
		}
		status := r.Status
		if r.WarmingUp > 0 {
			status = fmt.Sprintf("warming_up (%d/%d partitions)", r.WarmingUp, r.Partitions)
		}
		if r.Deprecated && r.Status != "deprecated" {
			status += ", deprecated"
		}
		if r.ReplacedBy != "" {
			status += " → " + r.ReplacedBy
		}
		if r.Sunset != "" {
			status += " (sunset " + r.Sunset + ")"
		}
		snap := "-"
		if r.SnapshotAt != nil {
			snap = r.SnapshotAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s@%d\t%s\t%s\t%s\t%s\t%s/%s\t%s\t%s\t%s\t", r.Name, r.Version, status, r.Entity, r.Source,
			agg, r.Window, r.Hop, r.Owner, fresh, snap)
		if withUsage {
			fmt.Fprintf(tw, "%s\t%s\t", consumersColumn(r), lastUsedColumn(r, now))
		}
		fmt.Fprintln(tw, r.Description)
	}
	return tw.Flush()
}

// addUsage sets each row's usage from the lookup log and whether it is
// unused: nobody read it in the 30 days before now, and it was registered
// at least 30 days ago (a younger or unregistered version is not yet
// unused).
func addUsage(rows []featureInfo, used map[string]*featureusage.Stats, now time.Time) {
	for i := range rows {
		r := &rows[i]
		st := used[fmt.Sprintf("%s@%d", r.Name, r.Version)]
		r.Usage = st
		// A version no worker registered yet has never been served: not unused.
		unused := r.Registered != nil && st.Unused(*r.Registered, now)
		r.Unused = &unused
	}
}

// consumersColumn lists the consumers that read r in the last 7 days with
// their keys served, most first: "fraud-api(120), anonymous(3)"; "-" when
// none; "unused" when nobody read it for 30 days.
func consumersColumn(r featureInfo) string {
	var parts []string
	if r.Usage != nil {
		for _, c := range r.Usage.Consumers {
			if c.Windows.Week.Keys > 0 {
				parts = append(parts, fmt.Sprintf("%s(%d)", c.Name, c.Windows.Week.Keys))
			}
		}
	}
	switch {
	case len(parts) > 0:
		return strings.Join(parts, ", ")
	case r.Unused != nil && *r.Unused:
		return "unused"
	}
	return "-"
}

// lastUsedColumn is how long ago r was last read, or "never".
func lastUsedColumn(r featureInfo, now time.Time) string {
	if r.Usage == nil {
		return "never"
	}
	return now.Sub(r.Usage.LastUsed).Round(time.Second).String() + " ago"
}

// featureFilter selects rows of `featurepipe features`; zero fields select all.
type featureFilter struct {
	search, owner, tag string
	unused             bool
}

// filterFeatures returns the rows f selects, in order. --search matches a
// case-insensitive substring of the name, description, owner or a tag;
// --owner and --tag match exactly, case-insensitively.
func filterFeatures(rows []featureInfo, f featureFilter) []featureInfo {
	var out []featureInfo
	search := strings.ToLower(f.search)
	for _, r := range rows {
		if f.owner != "" && !strings.EqualFold(r.Owner, f.owner) {
			continue
		}
		if f.tag != "" && !slices.ContainsFunc(r.Tags, func(t string) bool { return strings.EqualFold(t, f.tag) }) {
			continue
		}
		if f.unused && (r.Unused == nil || !*r.Unused) {
			continue
		}
		if search != "" {
			hay := []string{r.Name, r.Description, r.Owner}
			hay = append(hay, r.Tags...)
			if !slices.ContainsFunc(hay, func(h string) bool { return strings.Contains(strings.ToLower(h), search) }) {
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// describeFeatures merges the feature file with what the registry knows.
func describeFeatures(cfg *config.File, view *registry.View, now time.Time) []featureInfo {
	var rows []featureInfo
	for _, f := range cfg.Features {
		window := "lifetime"
		if !f.Window.Lifetime() {
			window = aggregations.FormatDuration(f.Window.Size)
		}
		r := featureInfo{Name: f.Name, Version: f.Version, Deprecated: f.Deprecated, Entity: f.Entity, Source: f.Source,
			Aggregation: f.Aggregation.String(), Field: f.Field, Window: window, Hop: aggregations.FormatDuration(f.Window.Hop),
			Owner: f.Owner, Description: strings.TrimSpace(f.Description), Tags: f.Tags, Hash: f.Hash, Status: "unknown"}
		if f.IsDerived() { // no source, aggregation or window: its expression
			r.Aggregation, r.Field, r.Window, r.Hop = "derived", f.Derived.Expr, "-", "-"
		}
		r.ReplacedBy = f.ReplacedBy
		if !f.Sunset.IsZero() {
			r.Sunset = f.Sunset.Format(time.DateOnly)
		}
		if view != nil {
			r.Status = "unregistered"
			if d, ok := view.Definition(f.ID); ok {
				at := d.RegisteredAt
				r.Registered = &at
				r.RegistryDiffer = d.Hash != f.Hash
				r.Status = registry.StateReady
			}
			for _, s := range view.Statuses(f.ID) {
				r.Partitions++
				if s.State == registry.StateWarmingUp {
					r.WarmingUp++
				}
				if r.LastPublished == nil || s.UpdatedAt.After(*r.LastPublished) {
					at := s.UpdatedAt
					r.LastPublished = &at
				}
			}
			if r.WarmingUp > 0 {
				r.Status = registry.StateWarmingUp
			}
			if r.LastPublished != nil {
				secs := now.Sub(*r.LastPublished).Seconds()
				r.FreshnessSecs = &secs
			}
		}
		if f.Deprecated && r.Status != registry.StateWarmingUp {
			r.Status = "deprecated"
		}
		rows = append(rows, r)
	}
	return rows
}

// addSnapshots sets, per row, the newest snapshot (ms is newest first) that
// holds the version with its current definition hash.
func addSnapshots(rows []featureInfo, cfg *config.File, ms []*snapshot.Manifest) {
	for i := range rows {
		f := cfg.Features[i]
		for _, m := range ms {
			found := false
			for _, fr := range m.Features {
				if fr.ID == f.ID && fr.Hash == f.Hash {
					found = true
					break
				}
			}
			if found {
				at := m.CreatedAt
				rows[i].Snapshot, rows[i].SnapshotAt = m.ID, &at
				break
			}
		}
	}
}
