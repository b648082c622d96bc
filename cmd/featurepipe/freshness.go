package main

// `featurepipe load --freshness`: how long an event takes from the
// producer's acknowledgement to a lookup replica's HTTP answer, under a
// steady stream of other events.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/worker"
	"github.com/featurepipe/featurepipe/schemas"
)

// freshParams are the flags of `featurepipe load --freshness`.
type freshParams struct {
	url        string   // lookup service; "" self-hosts
	brokers    []string // with url: the pipeline's brokers
	rate       float64  // background events per second
	duration   time.Duration
	warmup     time.Duration
	keys       int           // background events' users u0001 ... u<keys>
	probeEvery time.Duration // one probe event per probeEvery
	pollEvery  time.Duration // the probe key's lookups, one per pollEvery
	settle     time.Duration // how long the last probes may take to become visible
	// Self-hosted only: the worker's Options.PublishInterval (0: its
	// default) and Options.FixedPublishInterval.
	publishInterval time.Duration
	fixedInterval   bool
	cpuProfile      string // --cpuprofile: this process's measured period
	// configPath is --config: the feature file ("": the embedded demo
	// file, schemas/demo.yaml).
	configPath string
}

func (p freshParams) String() string {
	target := `--url "" (self-hosted)`
	if p.url != "" {
		target = fmt.Sprintf("--url %s --brokers %s", p.url, strings.Join(p.brokers, ","))
	}
	if p.url == "" && p.publishInterval > 0 {
		target += " --publish-interval " + p.publishInterval.String()
	}
	if p.url == "" && p.fixedInterval {
		target += " --fixed-publish-interval"
	}
	if p.configPath != "" {
		target += " --config " + p.configPath
	}
	return fmt.Sprintf("--freshness %s --rate %g --duration %s --warmup %s --keys %d --probe-interval %s --probe-poll %s",
		target, p.rate, p.duration, p.warmup, p.keys, p.probeEvery, p.pollEvery)
}

// freshnessFeature is the probe's feature in the demo feature file: the
// count of a user's transactions in 7 days. The probe user's count is the
// number of probe events visible.
const freshnessFeature = "txn_count_7d"

// freshnessSource is the source both streams are produced to: the
// transactions of schemas/transaction.avsc (user_id, merchant_id, amount,
// currency, ts).
const freshnessSource = "transactions"

// probeFeature is the feature the probe user is looked up by: in the demo
// file freshnessFeature, in another file the count over freshnessSource,
// without a where, of an entity keyed by user_id alone, with the longest
// window (lifetime first; ties: the first in the file). Any other feature
// could miss probes (a where) or forget them during the run (a short
// window).
func probeFeature(cfg *config.File) (*config.Feature, error) {
	usable := func(f *config.Feature) bool {
		e, ok := cfg.Entity(f.Entity)
		return ok && f.Source == freshnessSource && f.Aggregation == aggregations.Count && f.Where == "" &&
			slices.Equal(e.Keys, []string{"user_id"})
	}
	var best *config.Feature
	for _, f := range cfg.Features {
		switch {
		case !usable(f):
		case f.Name == freshnessFeature:
			return f, nil
		case best == nil || longerWindow(f.Window, best.Window):
			best = f
		}
	}
	if best == nil {
		return nil, fmt.Errorf("--freshness needs a feature to look the probe user up by: a count over source %s, without where, of an entity keyed by user_id alone", freshnessSource)
	}
	return best, nil
}

// longerWindow reports whether a keeps events longer than b (lifetime
// longest).
func longerWindow(a, b aggregations.Window) bool {
	switch {
	case b.Lifetime():
		return false
	case a.Lifetime():
		return true
	}
	return a.Size > b.Size
}

// selfHostedFreshness starts what `featurepipe dev` runs, as `featurepipe
// load` self-hosted does: an embedded broker and one worker (Pebble without
// fsync, as dev) in this process, `featurepipe serve` (the lookup replica)
// in a child process, then measures (see measureFreshness).
func selfHostedFreshness(ctx context.Context, p freshParams, cfg *config.File, stdout, stderr io.Writer) error {
	sp := selfHostedSpec{name: "freshness", cfg: cfg, configPath: p.configPath, lookupLogSample: "0",
		worker: worker.Options{PublishInterval: p.publishInterval, FixedPublishInterval: p.fixedInterval}}
	return runSelfHosted(ctx, sp, stderr, func(ctx context.Context, s selfHosted) error {
		publication := "adaptive publication"
		if p.fixedInterval {
			publication = "fixed publish interval"
		}
		target := fmt.Sprintf("embedded broker and 1 worker (%s, %d features, Pebble without fsync, as `featurepipe dev`; %s) in this process; `featurepipe serve` in its own process over loopback; %d partitions",
			freshnessConfigName(p.configPath), len(cfg.Features), publication, cfg.Kafka.Partitions)
		err := measureFreshness(ctx, p, s.brokers, cfg, s.base, target, stdout, stderr)
		printWorkerPublications(stdout, s.worker.Metrics())
		return err
	})
}

// loadFreshnessConfig loads --config, or the embedded demo file when path
// is "".
func loadFreshnessConfig(path string) (*config.File, error) {
	if path == "" {
		cfg, err := config.LoadFS(schemas.Files, "demo.yaml")
		if err != nil {
			return nil, fmt.Errorf("demo feature file: %w", err)
		}
		return cfg, nil
	}
	return config.Load(path)
}

// freshnessConfigName names the feature file in reports.
func freshnessConfigName(path string) string {
	if path == "" {
		return "demo feature file"
	}
	return "feature file " + path
}

// probeTimes are one probe event's instants.
type probeTimes struct {
	sent, acked, visible time.Time
	measured             bool // sent after the warm-up
}

// freshResult is what measureFreshness observed.
type freshResult struct {
	probes  []probeTimes
	events  int64         // background events acknowledged
	elapsed time.Duration // of the background stream, warm-up included
	polls   int64
}

// measureFreshness measures produce → visible through the lookup HTTP API
// at base: a background stream of p.rate transactions per second of users
// u0001 ... u<keys> (event times now), and every p.probeEvery one
// transaction of a probe user unique to this run. A probe is visible when a
// lookup of the probe user's transaction count (txn_count_7d) answers at
// least its sequence number: the probes share one key, so one partition,
// and are applied in order. The probe user is looked up every p.pollEvery;
// a probe's visible time is the arrival of the first answer that shows it
// (so the figure is an upper bound, by up to one lookup round trip plus
// p.pollEvery). The path measured is the real one: Kafka, the worker's
// apply, commit and publication, the feature log, the lookup replica's
// view and its HTTP answer.
func measureFreshness(ctx context.Context, p freshParams, brokers []string, cfg *config.File, base, target string, stdout, stderr io.Writer) error {
	conn := kafka.ConnOf(brokers, cfg)
	loadCl, err := kafka.NewClient(conn, "featurepipe-load-freshness", nil,
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return fmt.Errorf("load producer: %w", err)
	}
	defer loadCl.Close()
	// The probes alone, unlingered: their acknowledgement is their own.
	probeCl, err := kafka.NewClient(conn, "featurepipe-load-probe", nil, kgo.ProducerLinger(0))
	if err != nil {
		return fmt.Errorf("probe producer: %w", err)
	}
	defer probeCl.Close()
	if err := kafka.EnsureTopics(ctx, loadCl, cfg); err != nil {
		return err
	}
	probe, err := probeFeature(cfg)
	if err != nil {
		return err
	}
	probeEnc, err := produce.NewEncoder(cfg, freshnessSource)
	if err != nil {
		return fmt.Errorf("--freshness needs a source %s of schemas/transaction.avsc's fields: %w", freshnessSource, err)
	}
	loadEnc, err := produce.NewEncoder(cfg, freshnessSource)
	if err != nil {
		return err
	}
	probeKey := "freshness-probe-" + strconv.FormatInt(time.Now().UnixNano(), 36)

	var (
		mu     sync.Mutex
		probes []probeTimes
		seen   int // probes visible so far
	)
	var polls atomic.Int64
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	pollErr := make(chan error, 1)
	go func() {
		req := lookup.LookupRequest{Entity: probe.Entity, Keys: []string{probeKey}, Features: []string{probe.Name}}
		var lastErr error
		failures := 0
		for pollCtx.Err() == nil {
			var resp lookup.LookupResponse
			status, err := postLookup(pollCtx, base, req, &resp)
			at := time.Now()
			polls.Add(1)
			switch {
			case pollCtx.Err() != nil:
			case err != nil || status != http.StatusOK:
				if err == nil {
					err = fmt.Errorf("HTTP %d", status)
				}
				lastErr = err
				if failures++; failures > 30_000 { // not ready for ~30s+
					pollErr <- fmt.Errorf("lookups of the probe keep failing: %v", lastErr)
					return
				}
			default:
				failures = 0
				n := 0
				if len(resp.Results) == 1 {
					if v := resp.Results[0].Features[probe.Name].Value; v != nil {
						n = int(*v)
					}
				}
				mu.Lock()
				for ; seen < n && seen < len(probes); seen++ {
					probes[seen].visible = at
				}
				mu.Unlock()
			}
			select {
			case <-pollCtx.Done():
			case <-time.After(p.pollEvery):
			}
		}
		pollErr <- nil
	}()

	var probeErr atomic.Pointer[error]
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	sendProbe := func(measured bool) error {
		rec, err := probeEnc.Record(map[string]any{"user_id": probeKey, "merchant_id": "m000",
			"amount": 1.0, "currency": "EUR", "ts": time.Now().UnixMilli()})
		if err != nil {
			return err
		}
		mu.Lock()
		i := len(probes)
		probes = append(probes, probeTimes{sent: time.Now(), measured: measured})
		mu.Unlock()
		probeCl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			at := time.Now()
			if err != nil {
				probeErr.CompareAndSwap(nil, &err)
				return
			}
			mu.Lock()
			probes[i].acked = at
			mu.Unlock()
		})
		return nil
	}
	visibleCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
	// Wait until the pipeline is up: a first probe is visible.
	t0 := time.Now()
	if err := sendProbe(false); err != nil {
		return err
	}
	if err := waitVisible(ctx, 1, 2*time.Minute, visibleCount, pollErr); err != nil {
		return fmt.Errorf("the first probe (user %s, feature %s): %w", probeKey, probe.Name, err)
	}
	fmt.Fprintf(stderr, "a first probe is visible after %s; running %g events/s for %s (after %s of warm-up), a probe every %s...\n",
		time.Since(t0).Round(time.Millisecond), p.rate, p.duration, p.warmup, p.probeEvery)

	// The background stream: open loop, event i due at start + i/rate.
	var acked atomic.Int64
	var loadErr atomic.Pointer[error]
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadDone := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var sent int64
		for {
			select {
			case <-loadCtx.Done():
				loadDone <- time.Since(start)
				return
			case <-tick.C:
			}
			due := int64(time.Since(start).Seconds() * p.rate)
			for ; sent < due; sent++ {
				rec, err := loadEnc.Record(map[string]any{
					"user_id": loadKey(1 + rng.IntN(p.keys)), "merchant_id": fmt.Sprintf("m%03d", rng.IntN(200)),
					"amount": float64(int(rng.ExpFloat64()*4000)) / 100, "currency": "EUR", "ts": time.Now().UnixMilli(),
				})
				if err != nil {
					loadErr.CompareAndSwap(nil, &err)
					loadDone <- time.Since(start)
					return
				}
				loadCl.Produce(loadCtx, rec, func(_ *kgo.Record, err error) {
					if err == nil {
						acked.Add(1)
					} else if loadCtx.Err() == nil {
						loadErr.CompareAndSwap(nil, &err)
					}
				})
			}
		}
	}()
	stopProfile, err := startCPUProfile(p.cpuProfile, p.warmup)
	if err != nil {
		stopLoad()
		<-loadDone
		return err
	}
	probeTick := time.NewTicker(p.probeEvery)
	end := start.Add(p.warmup + p.duration)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			stopProfile()
			return ctx.Err()
		case <-probeTick.C:
		}
		if err := sendProbe(time.Since(start) >= p.warmup); err != nil {
			probeTick.Stop()
			stopProfile()
			return err
		}
	}
	probeTick.Stop()
	stopProfile()
	stopLoad()
	elapsed := <-loadDone
	mu.Lock()
	total := len(probes)
	mu.Unlock()
	werr := waitVisible(ctx, total, p.settle, visibleCount, pollErr)
	stopPoll()
	if perr := probeErr.Load(); perr != nil {
		return fmt.Errorf("produce a probe: %w", *perr)
	}
	if lerr := loadErr.Load(); lerr != nil {
		return fmt.Errorf("produce the background stream: %w", *lerr)
	}
	mu.Lock()
	res := freshResult{probes: slices.Clone(probes), events: acked.Load(), elapsed: elapsed, polls: polls.Load()}
	mu.Unlock()
	printFreshReport(stdout, p, target, base, probeKey, probe.Name, res)
	if werr != nil {
		return fmt.Errorf("%d of %d probes visible: %w", visibleCount(), total, werr)
	}
	return nil
}

// waitVisible waits until n probes are visible, the poller fails, ctx ends
// or timeout passes.
func waitVisible(ctx context.Context, n int, timeout time.Duration, visible func() int, pollErr <-chan error) error {
	deadline := time.Now().Add(timeout)
	for visible() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("not visible within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-pollErr:
			if err == nil {
				err = ctx.Err()
			}
			return err
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func printFreshReport(w io.Writer, p freshParams, target, base, probeKey, probeFeature string, r freshResult) {
	var fromAck, fromSend, ackLag []time.Duration
	missing := 0
	for _, pr := range r.probes {
		if !pr.measured {
			continue
		}
		if pr.visible.IsZero() || pr.acked.IsZero() {
			missing++
			continue
		}
		// The worker may read a probe before its producer hears the
		// acknowledgement: a negative age counts as 0.
		fromAck = append(fromAck, max(0, pr.visible.Sub(pr.acked)))
		fromSend = append(fromSend, pr.visible.Sub(pr.sent))
		ackLag = append(ackLag, pr.acked.Sub(pr.sent))
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
	row := func(name string, s []time.Duration) {
		slices.Sort(s)
		if len(s) == 0 {
			fmt.Fprintf(w, "  %-30s no sample\n", name)
			return
		}
		fmt.Fprintf(w, "  %-30s p50 %s   p90 %s   p99 %s   max %s\n", name,
			ms(quantile(s, 0.5)), ms(quantile(s, 0.9)), ms(quantile(s, 0.99)), ms(s[len(s)-1]))
	}
	fmt.Fprintf(w, "\nfeaturepipe load --freshness: produce → visible in a lookup replica, under a steady stream\n")
	fmt.Fprintf(w, "  machine      %s/%s, runtime.NumCPU %d, GOMAXPROCS %d, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Fprintf(w, "  target       %s\n", target)
	fmt.Fprintf(w, "  parameters   %s\n", p)
	fmt.Fprintf(w, "  stream       %d events acknowledged in %s (%.0f/s achieved), users u0001..%s, event times now\n",
		r.events, r.elapsed.Round(time.Millisecond), float64(r.events)/r.elapsed.Seconds(), loadKey(p.keys))
	fmt.Fprintf(w, "  probes       %d measured (after the warm-up), %d not visible within %s; user %s, visible when POST %s/v1/lookup answers its %s ≥ the probe's number (%d lookups)\n",
		len(fromAck)+missing, missing, p.settle, probeKey, base, probeFeature, r.polls)
	fmt.Fprintf(w, "latency of the %d visible probes (visible: the first lookup answer showing it; resolution one lookup + %s):\n", len(fromAck), p.pollEvery)
	row("producer ack → visible", fromAck)
	row("produce call → visible", fromSend)
	row("produce call → ack", ackLag)
}

// runFreshness checks the flags of `featurepipe load --freshness` and runs it.
// freshFlags are the flags of `featurepipe load` for --freshness only.
type freshFlags struct {
	brokers                         []string
	probeEvery, probePoll, pubEvery time.Duration
	fixedInterval                   bool
	configPath                      string
}

func runFreshness(ctx context.Context, fs *flag.FlagSet, lp loadParams, ff freshFlags, stdout, stderr io.Writer) error {
	brokers, probeEvery, probePoll := ff.brokers, ff.probeEvery, ff.probePoll
	p := freshParams{url: strings.TrimSuffix(lp.url, "/"), brokers: brokers, rate: lp.rate, duration: lp.duration, warmup: lp.warmup,
		keys: lp.keys, probeEvery: probeEvery, pollEvery: probePoll, settle: 30 * time.Second,
		publishInterval: ff.pubEvery, fixedInterval: ff.fixedInterval, cpuProfile: lp.cpuProfile, configPath: ff.configPath}
	rateSet := false
	fs.Visit(func(f *flag.Flag) { rateSet = rateSet || f.Name == "rate" })
	if !rateSet {
		p.rate = 10000
	}
	if err := checkLoadRun(p.rate, p.duration, p.warmup, p.keys); err != nil {
		return err
	}
	switch {
	case probeEvery <= 0:
		return usagef("--probe-interval must be positive")
	case probePoll < 0:
		return usagef("--probe-poll must not be negative")
	case lp.baseline:
		return usagef("--baseline and --freshness exclude each other")
	case p.url != "" && len(brokers) == 0:
		return usagef("--freshness --url needs --brokers: the pipeline's Kafka brokers, to produce to")
	case p.url == "" && len(brokers) > 0:
		return usagef("--brokers needs --url: the lookup service of that pipeline")
	case p.url != "" && (p.publishInterval != 0 || p.fixedInterval):
		return usagef("--publish-interval and --fixed-publish-interval configure the self-hosted worker: not with --url")
	case p.publishInterval < 0:
		return usagef("--publish-interval must not be negative")
	}
	if p.configPath != "" {
		abs, err := filepath.Abs(p.configPath) // the lookup service's working directory may differ
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		p.configPath = abs
	}
	cfg, err := loadFreshnessConfig(p.configPath)
	if err != nil {
		return err
	}
	if _, err := probeFeature(cfg); err != nil { // before anything starts
		return err
	}
	if p.url == "" {
		return selfHostedFreshness(ctx, p, cfg, stdout, stderr)
	}
	return measureFreshness(ctx, p, brokers, cfg, p.url, "the pipeline of --brokers and --url ("+freshnessConfigName(p.configPath)+")", stdout, stderr)
}

// printWorkerPublications reports what the self-hosted worker applied and
// published over the whole run (first probe and warm-up included): the
// cost side of freshness.
func printWorkerPublications(w io.Writer, m *metrics.Worker) {
	events := 0.0
	for _, src := range []string{"transactions", "logins"} {
		events += testutil.ToFloat64(m.EventsIn.WithLabelValues(src))
	}
	records := testutil.ToFloat64(m.TilesPublished)
	fmt.Fprintf(w, "worker (whole run): %.0f source events applied, %.0f feature-log records (%.1f per event), publications by trigger:",
		events, records, records/max(events, 1))
	for _, tr := range []string{"caught_up", "interval", "cache_full"} {
		fmt.Fprintf(w, " %s %.0f", tr, testutil.ToFloat64(m.Publications.WithLabelValues(tr)))
	}
	fmt.Fprintln(w)
}
