package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/broker"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/feastflight"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

func runKafka(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("kafka", "[--listen 127.0.0.1:9092] [--data DIR]", stderr)
	listenAddr := fs.String("listen", "127.0.0.1:9092", "host:port the broker listens on")
	data := fs.String("data", "", "directory to persist topics and groups in (default: memory only)")
	partitions := fs.Int("partitions", 6, "partitions of auto-created topics")
	if err := parse(fs, args); err != nil {
		return err
	}
	b, err := broker.Start(broker.Options{Listen: *listenAddr, DataDir: *data, Partitions: *partitions})
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Fprintf(stdout, "embedded Kafka broker listening on %s (topics are created on first use); Ctrl-C to stop\n", b.Addr())
	<-ctx.Done()
	return nil
}

func runProduce(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("produce", "--brokers B --config F --source NAME --input FILE|-", stderr)
	brokersFlag := fs.String("brokers", "", "comma-separated Kafka bootstrap brokers")
	cfgPath := fs.String("config", "", "feature file (YAML)")
	source := fs.String("source", "", "source name in the feature file")
	input := fs.String("input", "-", "JSON-lines file, one event per line (- for stdin)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "brokers", "config", "source"); err != nil {
		return err
	}
	brokers, err := kafka.ParseBrokers(*brokersFlag)
	if err != nil {
		return usagef("%v", err)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	conn := kafka.ConnOf(brokers, cfg)
	if err := checkKafka(ctx, conn); err != nil {
		return err
	}
	enc, err := produce.NewEncoder(cfg, *source)
	if err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	name := "stdin"
	if *input != "-" {
		f, err := os.Open(*input)
		if err != nil {
			return fmt.Errorf("open input: %w", err)
		}
		defer f.Close()
		in, name = f, *input
	}
	cl, err := kafka.NewClient(conn, "featurepipe-produce", nil, produce.ClientOpts(enc)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, cl, cfg); err != nil {
		return err
	}
	start := time.Now()
	st, bad, err := produce.Send(ctx, cl, enc, in, func(s produce.Stats) {
		fmt.Fprintf(stderr, "… %d lines read, %d sent\n", s.Lines, s.Sent)
	})
	for _, le := range bad {
		fmt.Fprintf(stderr, "%s:%d: %v\n", name, le.Line, le.Err)
	}
	fmt.Fprintf(stdout, "%d lines read, %d sent to %s, %d invalid, in %s\n", st.Lines, st.Sent, enc.Source().Topic, st.Invalid, time.Since(start).Round(time.Millisecond))
	if err != nil {
		return err
	}
	if st.Invalid > 0 {
		return fmt.Errorf("%d invalid line(s) were not sent (the %d valid ones were)", st.Invalid, st.Sent)
	}
	return nil
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlags("worker", "--brokers B --config F --data DIR [--metrics 127.0.0.1:9101]", stderr)
	sf := addServiceFlags(fs, "directory of this worker's Pebble state (one per worker process)")
	metricsAddr := fs.String("metrics", "127.0.0.1:9101", "host:port serving /metrics and /healthz (empty: off)")
	noSync := fs.Bool("no-sync", false, "do not fsync each batch commit (survives kill -9, not power loss)")
	instanceID := fs.String("instance-id", "", "static group membership id: a restart with the same id takes its partitions back without a rebalance")
	sessionTimeout := fs.Duration("session-timeout", 10*time.Second, "how long the group waits for a silent (killed) worker before rebalancing")
	rebalanceTimeout := fs.Duration("rebalance-timeout", 10*time.Second, "how long a rebalance waits for members to rejoin (a member dead mid-rebalance is dropped after it); must exceed the longest poll-loop step")
	stallAfter := fs.Duration("stall-after", 0, "/healthz fails when one poll-loop step or rebalance callback runs longer than this (default 3 × --rebalance-timeout)")
	snapDir := fs.String("snapshots", "", "snapshot directory (local or shared) or s3://bucket/prefix (endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION): state snapshots for lookup cold starts and backfills (default: none)")
	snapEvery := fs.Duration("snapshot-every", 10*time.Minute, "snapshot period (with --snapshots); POST /v1/snapshot on --metrics takes one now")
	snapRetain := fs.Int("snapshot-retain", 5, "snapshots kept per partition (older ones are deleted)")
	actor := fs.String("actor", "", "who runs this worker: recorded with the feature versions it registers (featurepipe history); default: the OS user")
	maxCached := fs.Int("max-cached-entities", worker.DefaultMaxCachedEntities, "decoded entities kept in memory between publications (a few KiB each; memory up to twice this many): the worker's memory bound, whatever the number of entities")
	stateCacheMB := fs.Int("state-cache-mb", 64, "Pebble block cache of the worker's state, MiB (Pebble's memory: this plus 128 MiB of memtables)")
	stf := addStatsFlags(fs)
	brokers, log, cfg, err := sf.setup(ctx, fs, args)
	if err != nil {
		return err
	}
	if *maxCached < 1 || *stateCacheMB < 1 {
		return usagef("--max-cached-entities (%d) and --state-cache-mb (%d) must be at least 1", *maxCached, *stateCacheMB)
	}
	defer log.Sync()
	reg := metrics.NewRegistry()
	snaps, err := openSnapshots(ctx, *snapDir, *snapRetain, true)
	if err != nil {
		return err
	}
	a := &app{}
	defer a.closeInto(&err)
	wo := worker.Options{Brokers: brokers, Config: cfg, Registerer: reg, Log: log,
		InstanceID: *instanceID, SessionTimeout: *sessionTimeout, RebalanceTimeout: *rebalanceTimeout, StallAfter: *stallAfter, Snapshots: snaps, SnapshotEvery: *snapEvery, Actor: *actor,
		MaxCachedEntities: *maxCached}
	// The store first: the statistics keep their hours in it (--baseline week).
	if wo.Store, err = openWorkerStore(a, wo, *sf.data, *noSync, int64(*stateCacheMB)<<20); err != nil {
		return err
	}
	stats, followCatalog, err := stf.live(ctx, reg, catalogAt{kafka.ConnOf(brokers, cfg), cfg.Kafka.RegistryTopic, log.Named("baselines")}, monitor.StoreHours(wo.Store))
	if err != nil {
		return err
	}
	if stats != nil {
		a.onClose("feature statistics hours", stats.Flush) // before the store closes
	}
	wo.Stats = stats
	w, err := openWorker(a, wo, *sf.data, *noSync)
	if err != nil {
		return err
	}
	a.add("worker", w.Run)
	if followCatalog != nil {
		a.add("dataset catalog", followCatalog) // default drift baselines
	}
	if *metricsAddr != "" {
		ln, err := listen(*metricsAddr)
		if err != nil {
			return err
		}
		a.onClose("metrics listener", ln.Close)
		mux := http.NewServeMux()
		mux.Handle("/", metricsMux(reg, w.Healthy))
		mux.Handle("POST /v1/snapshot", snapshotHandler(w))
		if stats != nil {
			mux.Handle("GET /v1/stats", stats.Handler(w.Freshness)) // featurepipe monitor
		}
		a.add("metrics", func(ctx context.Context) error { return serveHTTP(ctx, ln, mux, log) })
	}
	return a.run(ctx)
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlags("serve", "--brokers B --config F --data DIR [--listen :8080]", stderr)
	sf := addServiceFlags(fs, "directory of this replica's Pebble view")
	listenAddr := fs.String("listen", ":8080", "host:port of the HTTP API")
	logSample := fs.Float64("lookup-log-sample", 1, "probability that an answered key is logged to the lookup-log topic (0: off)")
	snapDir := fs.String("snapshots", "", "snapshot directory or s3://bucket/prefix the workers write (--snapshots): an empty replica starts from the newest snapshots instead of replaying the whole feature log")
	maxConsumers := fs.Int("max-consumers", lookup.DefaultMaxConsumers, "consumer names (from the X-Featurepipe-Consumer header) that get their own label in featurepipe_feature_lookups_total; later ones count as other (token consumers always get one)")
	tokensFile := fs.String("tokens", "", "tokens file (hashes, consumers and scopes; see featurepipe token): lookups then need a Bearer token (default: open to anyone, with a warning)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) of the HTTP listener: serve HTTPS (with --tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	withWebUI := fs.Bool("ui", true, "serve the web catalog at /ui/ (it obeys --tokens: a browser signs in with a token)")
	monitorWorkers := fs.String("monitor-workers", "", "comma-separated --metrics addresses of every worker: the web catalog's feature pages show their statistics and drift (as featurepipe monitor does); empty: none")
	flightAddr := fs.String("flight", "", "host:port for Feast's remote offline store (Arrow Flight): get_historical_features computed by the backfill engine; empty: off")
	cacheEntries := fs.Int("cache-entries", 100_000, "entity views kept in memory, encoded, in front of Pebble, with their cached answers (a few KiB each; 0: none)")
	stateCacheMB := fs.Int("state-cache-mb", 64, "Pebble block cache of the replica's view, MiB (Pebble's memory: this plus 128 MiB of memtables)")
	brokers, log, cfg, err := sf.setup(ctx, fs, args)
	if err != nil {
		return err
	}
	if *cacheEntries < 0 || *stateCacheMB < 1 {
		return usagef("--cache-entries (%d) must be at least 0, --state-cache-mb (%d) at least 1", *cacheEntries, *stateCacheMB)
	}
	if *maxConsumers < 1 {
		return usagef("--max-consumers must be at least 1; got %d", *maxConsumers)
	}
	var tokens *lookup.Tokens
	if *tokensFile != "" {
		if tokens, err = lookup.LoadTokens(*tokensFile, cfg); err != nil {
			return err
		}
	}
	defer log.Sync()
	reg := metrics.NewRegistry()
	sample, err := lookupLogSample(*logSample)
	if err != nil {
		return err
	}
	snaps, err := openSnapshots(ctx, *snapDir, 0, false)
	if err != nil {
		return err
	}
	a := &app{}
	defer a.closeInto(&err)
	svc, err := openLookup(a, lookup.Options{Brokers: brokers, Config: cfg, Registerer: reg, Gatherer: reg, Log: log,
		LookupLogSample: sample, Snapshots: snaps, Tokens: tokens, MaxConsumers: *maxConsumers,
		CacheEntries: zeroIsNone(*cacheEntries)}, *sf.data, int64(*stateCacheMB)<<20)
	if err != nil {
		return err
	}
	ln, err := listenHTTP(*listenAddr, *tlsCert, *tlsKey)
	if err != nil {
		return err
	}
	a.onClose("HTTP listener", ln.Close)
	if *flightAddr != "" {
		fl, err := feastflight.New(feastflight.Options{Brokers: brokers, Config: cfg, Snapshots: snaps, Log: log})
		if err != nil {
			return err
		}
		fln, err := listen(*flightAddr)
		if err != nil {
			return err
		}
		a.onClose("Flight listener", fln.Close)
		log.Info("Feast offline store (Arrow Flight) listening", zap.String("addr", fln.Addr().String()))
		a.add("flight", func(ctx context.Context) error { return fl.Serve(ctx, fln) })
	}
	log.Info("lookup service listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", *tlsCert != ""))
	h := svc.Handler()
	if *withWebUI {
		var feed *monitor.Feed
		if addrs := splitList(*monitorWorkers); len(addrs) > 0 {
			feed = monitor.NewFeed(workerStats(addrs, 5*time.Second))
		}
		if h, err = withUI(a, svc, brokers, cfg, tokens, feed, log); err != nil {
			return err
		}
	} else if *monitorWorkers != "" {
		return usagef("--monitor-workers is for the web catalog: drop it or --ui=false")
	}
	a.add("view", svc.Run)
	a.add("http", func(ctx context.Context) error { return serveHTTP(ctx, ln, h, log) })
	return a.run(ctx)
}

// serviceFlags are the flags every long-running service shares.
type serviceFlags struct {
	brokers, config, data, logFormat, logLevel *string
}

func addServiceFlags(fs *flag.FlagSet, dataHelp string) *serviceFlags {
	return &serviceFlags{
		brokers:   fs.String("brokers", "", "comma-separated Kafka bootstrap brokers"),
		config:    fs.String("config", "", "feature file (YAML)"),
		data:      fs.String("data", "", dataHelp),
		logFormat: fs.String("log-format", "json", "json or console"),
		logLevel:  fs.String("log-level", "info", "debug, info, warn or error"),
	}
}

// setup parses args, checks the required flags, loads what they name and,
// with kafka.security set, checks the connection (checkKafka).
func (sf *serviceFlags) setup(ctx context.Context, fs *flag.FlagSet, args []string) ([]string, *zap.Logger, *config.File, error) {
	if err := parse(fs, args); err != nil {
		return nil, nil, nil, err
	}
	if err := required(fs, "brokers", "config", "data"); err != nil {
		return nil, nil, nil, err
	}
	brokers, err := kafka.ParseBrokers(*sf.brokers)
	if err != nil {
		return nil, nil, nil, usagef("%v", err)
	}
	cfg, err := config.Load(*sf.config)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkKafka(ctx, kafka.ConnOf(brokers, cfg)); err != nil {
		return nil, nil, nil, err
	}
	log, err := newLogger(*sf.logFormat, *sf.logLevel)
	if err != nil {
		return nil, nil, nil, err
	}
	return brokers, log, cfg, nil
}

// batchFlags are the flags of the batch commands that replay the source
// topics (backfill, skew).
type batchFlags struct {
	brokers, config, mode *string
	modeFlag              string
	maxFuture             *time.Duration
}

// addBatchFlags defines --brokers, --config, the point-in-time mode flag
// (named modeFlag, default event) and --max-future (default
// events.DefaultMaxFuture, 24h).
func addBatchFlags(fs *flag.FlagSet, configHelp, modeFlag, modeHelp string) *batchFlags {
	return &batchFlags{
		brokers:  fs.String("brokers", "", "comma-separated Kafka bootstrap brokers"),
		config:   fs.String("config", "", configHelp),
		mode:     fs.String(modeFlag, string(backfill.ModeEvent), modeHelp),
		modeFlag: modeFlag,
		maxFuture: fs.Duration("max-future", events.DefaultMaxFuture,
			"how far after arrival an event time may be; the workers have no such flag and always use the default 24h; another value replays other events than they computed from"),
	}
}

// batchSetup is what batchFlags.setup loaded.
type batchSetup struct {
	brokers []string
	mode    backfill.Mode
	limits  events.Limits
	cfg     *config.File
	log     *zap.Logger // console, warn; the caller syncs it
}

// setup parses args, checks that --brokers, --config and the flags named in
// extra are set, loads what the flags name and, with kafka.security set,
// checks the connection (checkKafka).
func (bf *batchFlags) setup(ctx context.Context, fs *flag.FlagSet, args []string, extra ...string) (*batchSetup, error) {
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if err := required(fs, append([]string{"brokers", "config"}, extra...)...); err != nil {
		return nil, err
	}
	var s batchSetup
	var err error
	if s.brokers, err = kafka.ParseBrokers(*bf.brokers); err != nil {
		return nil, usagef("%v", err)
	}
	if s.mode, err = backfill.ParseMode(*bf.mode); err != nil {
		return nil, usagef("--%s: %v", bf.modeFlag, err)
	}
	s.limits = events.Limits{MaxFuture: *bf.maxFuture}
	if s.cfg, err = config.Load(*bf.config); err != nil {
		return nil, err
	}
	if err := checkKafka(ctx, kafka.ConnOf(s.brokers, s.cfg)); err != nil {
		return nil, err
	}
	if s.log, err = newLogger("console", "warn"); err != nil {
		return nil, err
	}
	return &s, nil
}

// checkKafka fails fast when the feature file's kafka.security does not
// get featurepipe into the cluster (a wrong password, an untrusted
// certificate, a listener of another protocol): kafka.Check, at most
// kafka.DefaultCheckTimeout. Without kafka.security it checks nothing, so a
// plaintext command still waits for brokers that are starting, as the
// clients' retries always did.
func checkKafka(ctx context.Context, c kafka.Conn) error {
	if c.Security.TLS == nil && c.Security.SASL == nil {
		return nil
	}
	return kafka.Check(ctx, c)
}

// splitList splits a comma-separated flag value into its trimmed, non-empty
// items (nil for "").
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// zeroIsNone maps a cache-size flag (0: no cache) to a lookup.Options
// bound (whose zero value means the default and a negative one none).
func zeroIsNone(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
