package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// serviceInfo is one row of `featurepipe features --services`.
type serviceInfo struct {
	Name        string           `json:"name"`
	Entity      string           `json:"entity"`
	Owner       string           `json:"owner"`
	Description string           `json:"description"`
	Models      []string         `json:"models,omitempty"`
	Features    []serviceFeature `json:"features"`
	// Origin is "file" for a service of the feature file, "registry" for
	// one only the catalog records (declared by the file the last started
	// worker runs; its features as resolved when recorded).
	Origin string `json:"origin"`
}

// serviceFeature is one feature of a service as listed and as a lookup
// would resolve it now.
type serviceFeature struct {
	Ref string `json:"ref"` // as the feature file lists it
	// ID is the version the reference resolves to: a pinned version, or for
	// a bare name the newest ready version (with --brokers; without, the
	// newest version that is not deprecated, as File.Feature picks).
	ID      string `json:"id"`
	Version int    `json:"version"`
	// Status is the resolved version's state in the registry: ready or
	// warming_up; unknown without --brokers.
	Status string `json:"status"`
}

// describeServices lists cfg's feature services with every reference
// resolved as the lookup service would resolve it (see
// config.File.ResolveReady); view nil treats every version as ready. With a
// view, the services the catalog records as running (registry.RecordFile)
// that cfg does not declare follow, as recorded.
func describeServices(cfg *config.File, view *registry.View) ([]serviceInfo, error) {
	var ready func(string) bool
	if view != nil {
		ready = view.Ready
	}
	rows := make([]serviceInfo, 0, len(cfg.Services))
	for _, s := range cfg.Services {
		r := serviceInfo{Name: s.Name, Entity: s.Entity, Owner: s.Owner, Description: strings.TrimSpace(s.Description), Models: s.Models, Origin: "file"}
		for _, ref := range s.Features {
			f, ok, err := cfg.ResolveReady(ref, ready)
			if err != nil {
				return nil, fmt.Errorf("feature service %s: %w", s.Name, err)
			}
			status := "unknown"
			switch {
			case view == nil:
			case ok:
				status = registry.StateReady
			default:
				status = registry.StateWarmingUp
			}
			r.Features = append(r.Features, serviceFeature{Ref: ref, ID: f.ID, Version: f.Version, Status: status})
		}
		rows = append(rows, r)
	}
	if view == nil {
		return rows, nil
	}
	for _, rs := range view.Services() {
		if _, err := cfg.Service(rs.Name); err == nil || rs.Retired {
			continue
		}
		r := serviceInfo{Name: rs.Name, Entity: rs.Entity, Owner: rs.Owner, Description: rs.Description, Models: rs.Models, Origin: "registry"}
		for i, ref := range rs.Features {
			f := serviceFeature{Ref: ref, Status: "unknown"}
			if i < len(rs.Resolved) {
				f.ID = rs.Resolved[i]
				if _, v, err := registry.ParseRef(f.ID); err == nil {
					f.Version = v
				}
				if _, ok := view.Definition(f.ID); ok {
					f.Status = registry.StateWarmingUp
					if view.Ready(f.ID) {
						f.Status = registry.StateReady
					}
				}
			}
			r.Features = append(r.Features, f)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// printServices writes rows as a table: one line per service, its features
// as listed, each bare name followed by the version it resolves to.
func printServices(w io.Writer, rows []serviceInfo) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no feature services are defined (declare them under services: in the feature file)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tENTITY\tOWNER\tFEATURES\tMODELS\tDESCRIPTION")
	for _, r := range rows {
		feats := make([]string, len(r.Features))
		for i, f := range r.Features {
			feats[i] = f.Ref
			if f.Ref != f.ID {
				feats[i] += " (@" + fmt.Sprint(f.Version) + ")"
			}
			if f.Status == registry.StateWarmingUp {
				feats[i] += " [warming up]"
			}
		}
		models := "-"
		if len(r.Models) > 0 {
			models = strings.Join(r.Models, ", ")
		}
		desc := r.Description
		if r.Origin == "registry" {
			desc = "[registry: not in this file] " + desc
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Entity, r.Owner, strings.Join(feats, ", "), models, desc)
	}
	return tw.Flush()
}

// runServices is `featurepipe features --services`.
func runServices(cfg *config.File, view *registry.View, asJSON bool, stdout io.Writer) error {
	rows, err := describeServices(cfg, view)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	return printServices(stdout, rows)
}
