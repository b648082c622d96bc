package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

// runMonitor prints every feature version's statistics and drift, merged
// over the workers' GET /v1/stats, and exits 2 when one crosses its
// thresholds (the feature file's monitor blocks). With --brokers it adds,
// per feature version, the statistics and drift of the values served to
// each consumer, read from the lookup log (monitor.ReadServed).
func runMonitor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("monitor", "--config F [--workers 127.0.0.1:9101,...] [--brokers B [--consumer C]] [--feature F] [--json]", stderr)
	cfgPath := fs.String("config", "", "feature file (thresholds: its monitor blocks)")
	workers := fs.String("workers", "127.0.0.1:9101", "comma-separated --metrics addresses of every worker (each reports the partitions it owns)")
	feature := fs.String("feature", "", "only this feature (name, or name@version)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	sparkline := fs.String("sparkline", "auto", "the table's DISTRIBUTION column, the values between p1 and p99 as a tiny histogram: auto (on a terminal), always or never")
	timeout := fs.Duration("timeout", 10*time.Second, "per-worker request timeout")
	brokersFlag := fs.String("brokers", "", "Kafka brokers: adds the statistics of the values served to each consumer over the last 1h and 24h, read from the lookup log "+
		"(reads the log's last 24h once: one JSON decode per served key)")
	consumer := fs.String("consumer", "", "with --brokers, only the values served to this consumer")
	servedSample := fs.Float64("served-sample", 1, "with --brokers, the fraction of lookup-log entries read into the served statistics, in (0, 1]")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usagef("--config is required (the thresholds are in the feature file)")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	addrs := splitList(*workers)
	if len(addrs) == 0 {
		return usagef("--workers names no worker")
	}
	var spark bool
	switch *sparkline {
	case "auto":
		spark = isTerminal(stdout)
	case "always":
		spark = true
	case "never":
	default:
		return usagef("--sparkline %q: want auto, always or never", *sparkline)
	}
	if !(*servedSample > 0 && *servedSample <= 1) {
		return usagef("--served-sample %v: want a fraction in (0, 1]", *servedSample)
	}
	if *consumer != "" && *brokersFlag == "" {
		return usagef("--consumer needs --brokers: served values are read from the lookup log")
	}
	var served *monitor.Served
	if *brokersFlag != "" {
		brokers, err := kafka.ParseBrokers(*brokersFlag)
		if err != nil {
			return usagef("--brokers: %v", err)
		}
		conn := kafka.ConnOf(brokers, cfg)
		if err := checkKafka(ctx, conn); err != nil {
			return err
		}
		if served, err = monitor.ReadServed(ctx, conn, cfg.Kafka.LookupLogTopic, monitor.ServedOptions{Sample: *servedSample}, nil); err != nil {
			return err
		}
	}
	snaps, err := workerStats(addrs, *timeout)(ctx)
	if err != nil {
		return err
	}
	stats, bases, fresh, err := monitor.Merge(snaps)
	if err != nil {
		return err
	}
	long, longWindow, err := monitor.MergeLong(snaps)
	if err != nil {
		return err
	}
	week, err := monitor.MergeWeek(snaps)
	if err != nil {
		return err
	}
	var reports []monitor.FeatureReport
	crossed := 0
	for _, f := range cfg.Features {
		if *feature != "" && *feature != f.Name && *feature != f.ID {
			continue
		}
		freshness, ok := fresh[f.ID]
		if !ok {
			freshness = -1
		}
		r := monitor.Check(f.ID, stats[f.ID], bases[f.ID], freshness, thresholdsOf(f), monitor.MinValues)
		if longWindow != "" {
			r.LongWindow = monitor.CheckWindow(f.ID, longWindow, long[f.ID], bases[f.ID], monitor.MinValues)
		}
		r.Week = monitor.CheckWeek(f.ID, week[f.ID], thresholdsOf(f), monitor.MinValues)
		bad := len(r.Crossed) > 0 || r.Week != nil && len(r.Week.Crossed) > 0
		if served != nil {
			r.Served = monitor.CheckServed(f.ID, served, bases[f.ID], thresholdsOf(f), monitor.MinValues)
			if *consumer != "" {
				r.Served = slices.DeleteFunc(r.Served, func(sr monitor.ServedReport) bool { return sr.Consumer != *consumer })
			}
			for _, sr := range r.Served {
				bad = bad || len(sr.Crossed) > 0
			}
		}
		if bad {
			crossed++
		}
		reports = append(reports, r)
	}
	if *feature != "" && len(reports) == 0 {
		return usagef("--feature %s: no such feature in %s", *feature, *cfgPath)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		out := map[string]any{"window": snaps[0].Window, "features": reports}
		if longWindow != "" {
			out["long_window"] = longWindow
		}
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		header := "FEATURE\tVALUES\tNULL\tMEAN\tP50\tP99\tBASELINE\tPSI\tKS\tFRESHNESS\tSTATUS"
		if spark {
			header += "\tDISTRIBUTION (P1 TO P99)"
		}
		fmt.Fprintln(tw, header)
		row := func(cells []string, h *monitor.Histogram) {
			if spark {
				cells = append(cells, monitor.SparklineCell(h))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		for _, r := range reports {
			row(r.Row(), r.Histogram)
			if r.LongWindow != nil {
				row(r.LongWindow.Row(), r.LongWindow.Histogram)
			}
			if r.Week != nil {
				row(r.Week.Row(), r.Week.Histogram)
			}
			for _, sr := range r.Served {
				row(sr.Row(), sr.Histogram)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, r := range reports { // lists and strings: lengths and top values
			if line := r.TopLine(); line != "" {
				fmt.Fprintf(stdout, "%s: %s\n", r.ID, line)
			}
			for _, sr := range r.Served {
				if line := sr.TopLine(); line != "" {
					fmt.Fprintf(stdout, "%s served to %s (%s): %s\n", r.ID, sr.Consumer, sr.Window, line)
				}
			}
		}
		if longWindow != "" {
			fmt.Fprintf(stdout, "statistics over the last %s (and %s, not checked against the thresholds), merged over %d worker(s)\n", snaps[0].Window, longWindow, len(snaps))
		} else {
			fmt.Fprintf(stdout, "statistics over the last %s, merged over %d worker(s)\n", snaps[0].Window, len(snaps))
		}
		if served != nil {
			fmt.Fprintln(stdout, "served: the values each consumer was served, from the lookup log, against the same baseline")
		}
	}
	if crossed > 0 {
		return &exitError{fmt.Errorf("%d feature version(s) crossed their monitor thresholds (published or served values)", crossed), 2}
	}
	return nil
}

// thresholdsOf is f's monitor block as monitor.Check takes it.
func thresholdsOf(f *config.Feature) monitor.Thresholds {
	return monitor.Thresholds{PSI: f.Monitor.PSI, NullRate: f.Monitor.NullRate, Freshness: f.Monitor.Freshness.Seconds()}
}

// workerStats returns a function that reads the snapshots of the workers at
// addrs (their --metrics addresses; GET /v1/stats), each request bounded by
// timeout: what `featurepipe monitor` merges and the web catalog's
// monitor.Feed follows.
func workerStats(addrs []string, timeout time.Duration) func(context.Context) ([]monitor.Snapshot, error) {
	client := &http.Client{Timeout: timeout}
	return func(ctx context.Context) ([]monitor.Snapshot, error) {
		snaps := make([]monitor.Snapshot, 0, len(addrs))
		for _, addr := range addrs {
			s, err := fetchStats(ctx, client, addr)
			if err != nil {
				return nil, err
			}
			snaps = append(snaps, s)
		}
		return snaps, nil
	}
}

// fetchStats reads one worker's GET /v1/stats.
func fetchStats(ctx context.Context, client *http.Client, addr string) (monitor.Snapshot, error) {
	var s monitor.Snapshot
	url := addr
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/v1/stats", nil)
	if err != nil {
		return s, usagef("--workers %s: %v", addr, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return s, fmt.Errorf("worker %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("worker %s: GET /v1/stats answered %s (statistics off: --stats-sample 0?)", addr, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("worker %s: /v1/stats: %w", addr, err)
	}
	return s, nil
}

// isTerminal reports whether w is a terminal (a character device), where
// the table gets its sparklines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
