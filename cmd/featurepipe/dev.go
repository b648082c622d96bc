package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/broker"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/worker"
	"github.com/featurepipe/featurepipe/schemas"
)

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlags("dev", "[--listen 127.0.0.1:8080] [--data DIR]", stderr)
	listenAddr := fs.String("listen", "127.0.0.1:8080", "host:port of the lookup API")
	kafkaAddr := fs.String("kafka", "127.0.0.1:0", "host:port of the embedded broker (0: any free port)")
	data := fs.String("data", "", "state directory (default: a temporary directory removed on exit)")
	users := fs.Int("users", 200, "demo users")
	rate := fs.Int("rate", 200, "demo events per second after the 35-day history")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *users <= 0 || *rate <= 0 {
		return usagef("--users and --rate must be positive")
	}
	log, err := newLogger("console", *logLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	dir := *data
	if dir == "" {
		if dir, err = os.MkdirTemp("", "featurepipe-dev-"); err != nil {
			return fmt.Errorf("temporary state directory: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	cfg, err := config.LoadFS(schemas.Files, "demo.yaml")
	if err != nil {
		return fmt.Errorf("demo feature file: %w", err)
	}
	a := &app{}
	defer a.closeInto(&err)
	b, err := broker.Start(broker.Options{Listen: *kafkaAddr, Partitions: int(cfg.Kafka.Partitions)})
	if err != nil {
		return err
	}
	a.onClose("broker", func() error { b.Close(); return nil })
	brokers := []string{b.Addr()}
	reg := metrics.NewRegistry()
	// Every value, 1h; each version's baseline is the newest dataset with
	// its statistics (a backfill against this broker registers one).
	catalog := registry.NewView()
	stats, err := monitor.NewLive(reg, monitor.LiveOptions{Resolve: func(id string) (monitor.Baseline, bool) { return datasetBaselineOf(catalog, id) }})
	if err != nil {
		return err
	}
	a.add("dataset catalog", func(ctx context.Context) error {
		return registry.Follow(ctx, kafka.ConnOf(brokers, cfg), cfg.Kafka.RegistryTopic, catalog, log.Named("baselines"), nil)
	})
	w, err := openWorker(a, worker.Options{Brokers: brokers, Config: cfg, Registerer: reg, Log: log.Named("worker"), Stats: stats}, dir, true)
	if err != nil {
		return err
	}
	svc, err := openLookup(a, lookup.Options{Brokers: brokers, Config: cfg, Registerer: reg, Gatherer: reg, Log: log.Named("lookup")}, dir, 0)
	if err != nil {
		return err
	}
	ln, err := listen(*listenAddr)
	if err != nil {
		return err
	}
	a.onClose("HTTP listener", ln.Close)
	prod, err := kafka.NewClient(kafka.Conn{Brokers: brokers}, "featurepipe-demo", nil, kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return fmt.Errorf("demo producer: %w", err)
	}
	a.onClose("demo producer", func() error { prod.Close(); return nil })

	var sent atomic.Int64
	a.add("worker", w.Run)
	a.add("lookup view", svc.Run)
	feed := monitor.NewFeed(func(context.Context) ([]monitor.Snapshot, error) {
		s := stats.Snapshot()
		s.Freshness = w.Freshness()
		return []monitor.Snapshot{s}, nil
	})
	h, err := withUI(a, svc, brokers, cfg, nil, feed, log)
	if err != nil {
		return err
	}
	a.add("http", func(ctx context.Context) error { return serveHTTP(ctx, ln, h, log) })
	a.add("demo events", func(ctx context.Context) error {
		d := produce.Demo{Users: *users, Rate: *rate, History: 35 * 24 * time.Hour}
		err := d.Run(ctx, prod, cfg, func(n int) { sent.Store(int64(n)) })
		if err == nil {
			<-ctx.Done()
		}
		return err
	})
	a.add("banner", func(ctx context.Context) error {
		for !svc.Ready() || sent.Load() == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
		}
		addr := ln.Addr().String()
		fmt.Fprintf(stdout, `
featurepipe dev is running: embedded Kafka on %s, one worker, one lookup service, demo events.
State in %s. Features are defined in schemas/demo.yaml.
The web catalog: http://%s/ui/

  curl -s http://%s/v1/lookup -d '{"entity":"user","keys":["u0001","u0002"],"features":["txn_amount_avg_30d","txn_count_7d","login_count_lifetime"]}'
  curl -s http://%s/v1/lookup -d '{"entity":"user","keys":["u0001"],"feature_service":"fraud_scoring"}'
  curl -s http://%s/v1/features/user/u0001
  curl -s http://%s/metrics | grep featurepipe_
  featurepipe features --brokers %s [--services]

Produce your own events:  featurepipe produce --brokers %s --config schemas/demo.yaml --source transactions --input events.jsonl

Monitoring (from the repository root; see README, Monitoring):
  prometheus --config.file=deploy/prometheus/prometheus-dev.yml --storage.tsdb.path=$(mktemp -d) --web.listen-address=127.0.0.1:9090
    (scrapes 127.0.0.1:8080/metrics%s; alert rules deploy/prometheus/alerts.yml)
  docker run --rm --network host -e FEATUREPIPE_PROMETHEUS_URL=http://127.0.0.1:9090 \
    -v $PWD/deploy/grafana/provisioning:/etc/grafana/provisioning -v $PWD/deploy/grafana/dashboards:/var/lib/grafana/dashboards \
    grafana/grafana   (http://127.0.0.1:3000, admin/admin, dashboard "featurepipe")
  or everything on Apache Kafka in containers: docker compose -f deploy/compose/compose.yml up --build
Ctrl-C to stop.
`, b.Addr(), dir, addr, addr, addr, addr, addr, b.Addr(), b.Addr(), promTargetNote(addr))
		log.Info("ready", zap.Int64("demo_events_sent", sent.Load()))
		<-ctx.Done()
		return nil
	})
	return a.run(ctx)
}

// promTargetNote tells, when the lookup API listens elsewhere than
// deploy/prometheus/prometheus-dev.yml's target, to change that target.
func promTargetNote(addr string) string {
	if addr == "127.0.0.1:8080" {
		return ""
	}
	return ": this one listens on " + addr + ", edit the target"
}
