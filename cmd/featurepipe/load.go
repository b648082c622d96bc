package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/loadgen"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/schemas"
)

// loadParams are the flags of `featurepipe load`.
type loadParams struct {
	url          string
	rate         float64
	duration     time.Duration
	warmup       time.Duration
	keys         int
	eventsPerKey int
	features     []string
	connections  int
	cpuProfile   string
	logSample    float64
	baseline     bool
}

func (p loadParams) String() string {
	url := p.url
	switch {
	case p.baseline:
		url = `"" --baseline`
	case url == "":
		url = `"" (self-hosted)`
	}
	return fmt.Sprintf("--url %s --rate %g --duration %s --warmup %s --keys %d --events-per-key %d --features %s --connections %d --lookup-log-sample %g",
		url, p.rate, p.duration, p.warmup, p.keys, p.eventsPerKey, strings.Join(p.features, ","), p.connections, p.logSample)
}

// loadKey is the entity key of user i (1-based): u0001, u0002, ..., the keys
// `featurepipe dev --users N` creates, so --url can target a dev instance.
func loadKey(i int) string { return fmt.Sprintf("u%04d", i) }

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("load", `[--url http://127.0.0.1:8080] [--rate 20000] [--duration 20s] [--keys 10000]
       featurepipe load --freshness [--url http://127.0.0.1:8080 --brokers 127.0.0.1:9092] [--config FILE] [--rate 10000] [--duration 20s]

Without --freshness: open-loop lookups at --rate, latency percentiles.

With --freshness: produce → visible. A steady stream of --rate transactions/s
(source transactions: users u0001..u<keys>, event times now) and, every
--probe-interval, one transaction of a probe user unique to the run; the probe
user's count (txn_count_7d in the demo file; with --config, the longest count
over transactions without where of an entity keyed by user_id) is looked up
every --probe-poll, and a probe is visible at the first answer counting it. Reports p50/p90/p99/max from the producer's
acknowledgement (and from the produce call) to visible: the whole path, Kafka,
worker, feature log, lookup replica, HTTP. Self-hosted (no --url): an embedded
broker and a worker as in featurepipe dev, featurepipe serve in its own process.
With --url: a running pipeline (featurepipe dev, or the pipeline of --config),
whose brokers --brokers names. --config (default: the embedded demo file) is
the feature file: schemas/history.yaml is issue 18's 7 features over one source.`, stderr)
	var p loadParams
	fs.StringVar(&p.url, "url", "", "lookup service to drive (e.g. http://127.0.0.1:8080); empty: self-host an embedded broker and a worker in this process and `featurepipe serve` in its own, with --keys users")
	fs.Float64Var(&p.rate, "rate", 20000, "requests per second (open loop: request i is due at start + i/rate)")
	fs.DurationVar(&p.duration, "duration", 20*time.Second, "measured period")
	fs.DurationVar(&p.warmup, "warmup", 3*time.Second, "period at --rate before the measured one, not counted")
	fs.IntVar(&p.keys, "keys", 10000, "entity keys u0001 ... u<keys>; each request looks up one at random")
	fs.IntVar(&p.eventsPerKey, "events-per-key", 20, "self-hosted only: transactions per key, spread over the last 30 days")
	features := fs.String("features", "txn_amount_avg_30d,txn_count_7d", "comma-separated features of entity user to look up")
	fs.IntVar(&p.connections, "connections", 64, "maximum requests in flight (and keep-alive connections)")
	fs.Float64Var(&p.logSample, "lookup-log-sample", 1, "self-hosted only: the lookup service's --lookup-log-sample (0: no lookup log)")
	fs.StringVar(&p.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured period of this process to this file (the generator; self-hosted: also the broker and the worker, not the lookup service, which runs in its own process)")
	fs.BoolVar(&p.baseline, "baseline", false, "drive a trivial HTTP server (net/http, answers every request with an empty result) in its own process instead of featurepipe: the latency floor this machine and generator set for any HTTP service")
	freshness := fs.Bool("freshness", false, "measure produce → visible in the lookup replica instead of lookup latency (see above); --rate is then background events/s, default 10000")
	brokerList := fs.String("brokers", "", "--freshness with --url: the pipeline's Kafka brokers (host:port,...)")
	probeEvery := fs.Duration("probe-interval", 20*time.Millisecond, "--freshness: one probe event per interval")
	probePoll := fs.Duration("probe-poll", time.Millisecond, "--freshness: pause between lookups of the probe user (the measure's resolution)")
	pubEvery := fs.Duration("publish-interval", 0, "--freshness, self-hosted: the worker's publish interval, the longest batching under load (0: the worker's default, 200ms)")
	configPath := fs.String("config", "", "--freshness: the feature file, with a source transactions of schemas/transaction.avsc (default: the embedded demo file)")
	fixedInterval := fs.Bool("fixed-publish-interval", false, "--freshness, self-hosted: the worker publishes at the interval only, never as soon as a light stream's poll is applied (the behaviour before adaptive publication, for comparison)")
	baselineServe := ""
	fs.StringVar(&baselineServe, "baseline-serve", "", "only serve the --baseline server on this host:port until interrupted (--baseline starts it)")
	if err := parse(fs, args); err != nil {
		return err
	}
	p.features = splitList(*features)
	if *freshness {
		return runFreshness(ctx, fs, p, freshFlags{brokers: splitList(*brokerList), probeEvery: *probeEvery, probePoll: *probePoll,
			pubEvery: *pubEvery, fixedInterval: *fixedInterval, configPath: *configPath}, stdout, stderr)
	}
	if *brokerList != "" || *pubEvery != 0 || *fixedInterval || *configPath != "" {
		return usagef("--brokers, --config, --publish-interval and --fixed-publish-interval apply to --freshness only")
	}
	if err := checkLoadRun(p.rate, p.duration, p.warmup, p.keys); err != nil {
		return err
	}
	switch {
	case p.eventsPerKey <= 0:
		return usagef("--events-per-key must be positive")
	case p.connections <= 0:
		return usagef("--connections must be positive")
	case len(p.features) == 0:
		return usagef("--features must name at least one feature")
	}
	if _, err := lookupLogSample(p.logSample); err != nil {
		return err
	}
	switch {
	case baselineServe != "":
		return serveBaseline(ctx, baselineServe)
	case p.baseline && p.url != "":
		return usagef("--baseline and --url exclude each other")
	case p.baseline:
		return baselineLoad(ctx, p, stdout, stderr)
	}
	if p.url != "" {
		return driveLoad(ctx, p, strings.TrimSuffix(p.url, "/"), "the lookup service at "+p.url, stdout, stderr)
	}
	return selfHostedLoad(ctx, p, stdout, stderr)
}

// selfHostedLoad starts an embedded broker, produces the demo history for
// p.keys users, runs one worker in this process and `featurepipe serve` in
// a child process, waits until the lookup view has every key, and drives the
// lookup service over loopback. A lookup service that exits on its own ends
// the run with "the lookup service exited: ...".
func selfHostedLoad(ctx context.Context, p loadParams, stdout, stderr io.Writer) error {
	cfg, err := config.LoadFS(schemas.Files, "demo.yaml")
	if err != nil {
		return fmt.Errorf("demo feature file: %w", err)
	}
	for _, f := range p.features {
		def, err := cfg.Feature(f)
		if err != nil {
			return usagef("--features: %v", err)
		}
		if def.Entity != "user" {
			return usagef("--features: %s is a feature of %s, not user", f, def.Entity)
		}
	}
	sp := selfHostedSpec{name: "load", cfg: cfg,
		lookupLogSample: strconv.FormatFloat(p.logSample, 'g', -1, 64),
		started:         "; waiting for the worker to fill its view...",
		before: func(ctx context.Context, brokers []string) error {
			t0 := time.Now()
			n, err := produceLoadHistory(ctx, brokers, cfg, p.keys, p.eventsPerKey)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "produced %d transactions for %d users in %s\n", n, p.keys, time.Since(t0).Round(time.Millisecond))
			return nil
		}}
	return runSelfHosted(ctx, sp, stderr, func(ctx context.Context, s selfHosted) error {
		target := fmt.Sprintf("`featurepipe serve` in its own process over loopback; embedded broker, 1 worker and this generator in this process; %d users × %d transactions over 30 days, %d partitions",
			p.keys, p.eventsPerKey, cfg.Kafka.Partitions)
		return waitAndDrive(ctx, p, s.base, target, stdout, stderr)
	})
}

// waitAndDrive waits until the lookup service at base has every key, then
// drives it (see driveLoad).
func waitAndDrive(ctx context.Context, p loadParams, base, target string, stdout, stderr io.Writer) error {
	t1 := time.Now()
	if err := waitForKeys(ctx, base, p.keys, p.features[0]); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "the lookup view has all %d users after %s\n", p.keys, time.Since(t1).Round(time.Millisecond))
	return driveLoad(ctx, p, base, target, stdout, stderr)
}

// child is a featurepipe subprocess of `featurepipe load`.
type child struct {
	pid   int
	proc  *os.Process
	grace time.Duration // stop's wait between SIGTERM and SIGKILL
	done  chan struct{} // closed when the process has exited; err is set then
	err   error         // Wait's result; read only after done is closed
}

// startChild starts this program with args, its output to stderr. The
// caller must call stop.
func startChild(stderr io.Writer, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program: %w", err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	return startCmd(cmd)
}

// startCmd starts cmd as a child with a 10s stop grace period.
func startCmd(cmd *exec.Cmd) (*child, error) {
	// Once the process has exited, stop waiting for its output pipe after
	// 5s (a grandchild could hold it open).
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{pid: cmd.Process.Pid, proc: cmd.Process, grace: 10 * time.Second, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// stop sends SIGTERM and waits up to c.grace for the exit, then sends
// SIGKILL and waits for the exit. When it returns the process is gone, so
// its files (a Pebble directory) are closed and may be removed. Safe to
// call more than once and after the child exited on its own.
func (c *child) stop() {
	_ = c.proc.Signal(syscall.SIGTERM)
	t := time.NewTimer(c.grace)
	defer t.Stop()
	select {
	case <-c.done:
		return
	case <-t.C:
	}
	_ = c.proc.Kill()
	<-c.done
}

// waitHealthy polls url every 20ms until it answers (any status), the child
// exits, ctx ends or timeout passes.
func (c *child) waitHealthy(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("exited: %v", c.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("did not answer within %s", timeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// baselineLoad drives a trivial HTTP server in a child process (see
// serveBaseline) with the same generator and parameters: the latency floor
// this machine sets for any HTTP service, to read featurepipe's figures
// against.
func baselineLoad(ctx context.Context, p loadParams, stdout, stderr io.Writer) error {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	c, err := startChild(stderr, "load", "--baseline-serve", addr)
	if err != nil {
		return fmt.Errorf("start the baseline server: %w", err)
	}
	defer c.stop()
	base := "http://" + addr
	if err := c.waitHealthy(ctx, base+"/healthz", 10*time.Second); err != nil {
		return fmt.Errorf("the baseline server on %s: %w", addr, err)
	}
	fmt.Fprintf(stderr, "baseline server (pid %d) on %s\n", c.pid, base)
	return driveLoad(ctx, p, base, "--baseline: a trivial net/http server in its own process (reads the body, answers {\"results\":[]}); no broker, no worker", stdout, stderr)
}

// serveBaseline serves the --baseline server on addr until ctx ends: every
// request's body is read and answered 200 with an empty lookup result.
func serveBaseline(ctx context.Context, addr string) error {
	ln, err := listen(addr)
	if err != nil {
		return err
	}
	body := []byte(`{"results":[]}`)
	return serveNetHTTP(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"application/json"}
		_, _ = w.Write(body)
	}))
}

// freeLoopbackAddr returns a 127.0.0.1 address with a port free right now,
// for a child process to listen on.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// produceLoadHistory produces events transactions per user, with event times
// spread uniformly over the last 30 days.
func produceLoadHistory(ctx context.Context, brokers []string, cfg *config.File, users, events int) (int, error) {
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		return 0, err
	}
	cl, err := kafka.NewClient(kafka.ConnOf(brokers, cfg), "featurepipe-load", nil,
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return 0, fmt.Errorf("load producer: %w", err)
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, cl, cfg); err != nil {
		return 0, err
	}
	rng := rand.New(rand.NewPCG(20000, 1))
	now := time.Now()
	const span = 30 * 24 * time.Hour
	n := 0
	var firstErr atomic.Pointer[error]
	for u := 1; u <= users; u++ {
		for range events {
			rec, err := enc.Record(map[string]any{
				"user_id": loadKey(u), "merchant_id": fmt.Sprintf("m%03d", rng.IntN(200)),
				"amount": float64(int(rng.ExpFloat64()*4000)) / 100, "currency": "EUR",
				"ts": now.Add(-time.Second - time.Duration(rng.Int64N(int64(span)))).UnixMilli(),
			})
			if err != nil {
				return n, err
			}
			cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
			})
			n++
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return n, fmt.Errorf("produce load history: %w", err)
	}
	if err := firstErr.Load(); err != nil {
		return n, fmt.Errorf("produce load history: %w", *err)
	}
	return n, nil
}

// waitForKeys polls the lookup service until feature is found (not
// NOT_FOUND) for every key, in batches of 1000 keys. It gives up after 2
// minutes without progress.
func waitForKeys(ctx context.Context, base string, keys int, feature string) error {
	const batch = 1000
	next := 1 // keys below next are known to be in the view
	lastProgress := time.Now()
	var lastErr error
	for next <= keys {
		if time.Since(lastProgress) > 2*time.Minute {
			return fmt.Errorf("the lookup view has not gained a user in 2 minutes; stuck at %s of %d (last error: %v)", loadKey(next), keys, lastErr)
		}
		req := lookup.LookupRequest{Entity: "user", Features: []string{feature}}
		for i := next; i < next+batch && i <= keys; i++ {
			req.Keys = append(req.Keys, loadKey(i))
		}
		var resp lookup.LookupResponse
		status, err := postLookup(ctx, base, req, &resp)
		// An error is a lookup service still starting (not listening yet, or
		// 503 not_ready): poll again, within the no-progress limit above.
		switch {
		case err != nil:
			lastErr = err
		case status != http.StatusOK:
			lastErr = fmt.Errorf("HTTP %d", status)
		}
		advanced := false
		if status == http.StatusOK {
			for _, r := range resp.Results {
				if r.Features[feature].Status == lookup.StatusNotFound {
					break
				}
				next++
				advanced = true
			}
		}
		if advanced {
			lastProgress = time.Now()
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

func postLookup(ctx context.Context, base string, body any, out any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/v1/lookup", bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("lookup service: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return 0, fmt.Errorf("lookup answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// driveLoad runs the load against base's /v1/lookup and prints the report.
// When base also serves featurepipe's /metrics, the report adds the
// server-side handler time of the run.
func driveLoad(ctx context.Context, p loadParams, base, target string, stdout, stderr io.Writer) error {
	url := base + "/v1/lookup"
	bodies := make([][]byte, p.keys)
	for i := range bodies {
		b, err := json.Marshal(lookup.LookupRequest{Entity: "user", Keys: []string{loadKey(i + 1)}, Features: p.features})
		if err != nil {
			return err
		}
		bodies[i] = b
	}
	// Probe once so that a wrong URL or feature fails fast, not as 400,000 errors.
	var probe lookup.LookupResponse
	status, err := postLookup(ctx, base, json.RawMessage(bodies[0]), &probe)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("POST %s answered HTTP %d to %s; check --url and --features", url, status, bodies[0])
	}
	fmt.Fprintf(stderr, "running %g requests/s for %s (after %s of warm-up)...\n", p.rate, p.duration, p.warmup)
	before, scraped := handlerBuckets(ctx, base)
	stopProfile, err := startCPUProfile(p.cpuProfile, p.warmup)
	if err != nil {
		return err
	}
	o := loadgen.Options{Rate: p.rate, Duration: p.duration, Warmup: p.warmup, MaxInFlight: p.connections}
	if host, ok := strings.CutPrefix(base, "http://"); ok && !strings.Contains(host, "/") {
		// The lean client: each key's request pre-built once, sent over raw
		// keep-alive connections (no net/http client on the hot path).
		wire := make([][]byte, len(bodies))
		hdr := http.Header{"Content-Type": {"application/json"}}
		for i, b := range bodies {
			wire[i] = loadgen.WireRequest("POST", host, "/v1/lookup", hdr, b)
		}
		o.Addr = host
		o.Wire = func(i uint64) []byte { return wire[mix(i)%uint64(len(wire))] }
	} else { // https, or a base path: net/http
		o.Request = func(ctx context.Context, i uint64) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(bodies[mix(i)%uint64(len(bodies))]))
			if err == nil {
				req.Header.Set("Content-Type", "application/json")
			}
			return req, err
		}
	}
	res, err := loadgen.Run(ctx, o)
	stopProfile()
	if err != nil {
		return err
	}
	var server map[float64]uint64
	if after, ok := handlerBuckets(ctx, base); ok && scraped {
		server = subBuckets(after, before)
	}
	printLoadReport(stdout, p, target, url, res, server)
	if res.Errors > 0 || res.Missed > 0 {
		return fmt.Errorf("%d of %d requests failed and %d were never sent (first error: %s)", res.Errors, res.Due, res.Missed, res.FirstError)
	}
	return nil
}

// startCPUProfile starts a CPU profile into path after delay (the warm-up)
// and returns the function that stops it. path "" profiles nothing.
func startCPUProfile(path string, delay time.Duration) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	timer := time.AfterFunc(delay, func() {
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "--cpuprofile: %v\n", err)
		}
	})
	return func() {
		if timer.Stop() { // the run ended during the warm-up
			f.Close()
			return
		}
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// mix is splitmix64's finalizer: request i's key, uniformly random and the
// same on every run.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func printLoadReport(w io.Writer, p loadParams, target, url string, r *loadgen.Result, server map[float64]uint64) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
	row := func(name string, h *loadgen.Histogram) {
		fmt.Fprintf(w, "  %-28s p50 %s   p90 %s   p99 %s   p99.9 %s   max %s\n", name,
			ms(h.Quantile(0.5)), ms(h.Quantile(0.9)), ms(h.Quantile(0.99)), ms(h.Quantile(0.999)), ms(h.Max()))
	}
	fmt.Fprintf(w, "\nfeaturepipe load: open-loop lookup latency at a fixed request rate\n")
	fmt.Fprintf(w, "  machine      %s/%s, runtime.NumCPU %d, GOMAXPROCS %d, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Fprintf(w, "  target       %s\n", target)
	fmt.Fprintf(w, "  request      POST %s, one random key of %d, features %s\n", url, p.keys, strings.Join(p.features, ","))
	fmt.Fprintf(w, "  parameters   %s\n", p)
	fmt.Fprintf(w, "  requests     %d due, %d sent, %d ok, %d errors, %d never sent; achieved %.1f/s over %s\n",
		r.Due, r.Sent, r.OK, r.Errors, r.Missed, r.AchievedRate(), r.Elapsed.Round(time.Millisecond))
	if r.Errors > 0 {
		fmt.Fprintf(w, "  by status    %v (0: no response); first error: %s\n", r.ByStatus, r.FirstError)
	}
	fmt.Fprintf(w, "latency of the %d ok requests:\n", r.OK)
	row("from scheduled time", r.Latency)
	row("service time (from send)", r.Service)
	row("send lag (generator)", r.Lag)
	if total := server[math.Inf(1)]; total > 0 {
		fmt.Fprintf(w, "server-side handler time (featurepipe_lookup_seconds{route=\"lookup\"} from /metrics, warm-up included):\n ")
		for _, le := range []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025} {
			fmt.Fprintf(w, "  <= %gms: %.3f%%", le*1000, 100*float64(server[le])/float64(total))
		}
		fmt.Fprintln(w)
	}
}

// handlerBuckets scrapes base's /metrics and returns the cumulative bucket
// counts of the lookup route's handler-time histogram, by upper bound in
// seconds (+Inf: the total). ok is false when base has no such metric.
func handlerBuckets(ctx context.Context, base string) (buckets map[float64]uint64, ok bool) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	if err != nil {
		return nil, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, false
	}
	mf := mfs["featurepipe_lookup_seconds"]
	if mf == nil {
		return nil, false
	}
	out := map[float64]uint64{}
	for _, m := range mf.GetMetric() {
		route := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "route" {
				route = l.GetValue()
			}
		}
		if route != "lookup" {
			continue
		}
		h := m.GetHistogram()
		for _, b := range h.GetBucket() {
			out[b.GetUpperBound()] = b.GetCumulativeCount()
		}
		out[math.Inf(1)] = h.GetSampleCount()
		ok = true
	}
	return out, ok
}

func subBuckets(after, before map[float64]uint64) map[float64]uint64 {
	out := make(map[float64]uint64, len(after))
	for k, v := range after {
		out[k] = v - before[k]
	}
	return out
}

// checkLoadRun checks the flags both modes of `featurepipe load` take:
// --rate, --duration, --warmup and --keys.
func checkLoadRun(rate float64, duration, warmup time.Duration, keys int) error {
	switch {
	case !(rate > 0):
		return usagef("--rate must be positive")
	case duration <= 0:
		return usagef("--duration must be positive")
	case warmup < 0:
		return usagef("--warmup must not be negative")
	case keys <= 0 || keys > 9_999_999:
		return usagef("--keys must be between 1 and 9999999")
	}
	return nil
}
