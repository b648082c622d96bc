# featurepipe: `make run` runs the whole pipeline on the embedded broker,
# `make test` runs every test. See README.md.
GO       ?= go
BIN      := bin/featurepipe
PKGS     := ./...

.PHONY: all build run test test-ui screenshots test-kafka test-s3 test-feast test-registry test-monitoring bench bench-apply bench-ingest bench-replay bench-scaling bench-lookup bench-lookups bench-freshness bench-coldstart bench-produce bench-backfill fmt lint fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/featurepipe

## run: everything in one process (embedded broker, worker, lookup service, demo events) on 127.0.0.1:8080
run:
	$(GO) run ./cmd/featurepipe dev

## test: gofmt, go vet, unit tests and the end-to-end suite on the embedded broker, with the race
## detector; then the allocation guarantees, which skip under -race (see pipeline/lookup/race_test.go)
ALLOC_TESTS := Allocat|ViewMissCachesThePebbleBytes
test: lint
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -count=1 -timeout 5m -run '$(ALLOC_TESTS)' $(PKGS)

## test-ui: the web catalog (pipeline/ui) in headless Chromium, driven by chromedp against the whole
## pipeline on the embedded broker. Needs Debian's chromium package: fails (does not skip) without it.
UI_TEST := $(GO) test -tags browser -count=1 -timeout 10m -run '^TestBrowser' ./pipeline/ui/
test-ui:
	@command -v chromium >/dev/null || { echo "test-ui needs Chromium: apt-get install -y chromium"; exit 1; }
	$(UI_TEST)

## screenshots: regenerate the README's pictures of the web catalog (pipeline/ui/screenshots/*.png, each < 150 KB)
screenshots:
	@command -v chromium >/dev/null || { echo "screenshots needs Chromium: apt-get install -y chromium"; exit 1; }
	UI_SCREENSHOTS=$(CURDIR)/pipeline/ui/screenshots $(UI_TEST)

## test-kafka: the end-to-end suite against a real Apache Kafka 4.x broker (needs Java 17 and Maven),
## then (after the suite's broker restart) the SASL_SSL tests over its second listener (SCRAM, test
## CA); FEATUREPIPE_REQUIRE_SASL_SSL=1 makes those fail, not skip, if run.sh printed no listener
test-kafka:
	@set -e; out=$$(deploy/kafka/run.sh start); export $$out; \
	trap 'deploy/kafka/run.sh stop' EXIT; export FEATUREPIPE_REQUIRE_SASL_SSL=1; \
	echo "running the end-to-end suite against Apache Kafka at $$KAFKA_BROKERS (SASL_SSL at $$KAFKA_SASL_SSL_BROKERS)"; \
	$(GO) test -count=1 -timeout 20m -skip 'SASLSSL' ./pipeline/e2e/... ./pipeline/backfill/... ./pipeline/skew/... ./pipeline/registry/... ./internal/kafka/...; \
	$(GO) test -count=1 -timeout 10m -run 'SASLSSL' ./cmd/featurepipe/ ./internal/kafka/

## test-s3: snapshots on a real S3 server: versitygw (posix backend), built from its Go module into
## .cache/versitygw on first use (deploy/versitygw/run.sh); each test starts its own server. A skip fails.
test-s3:
	@set -e; out=$$(deploy/versitygw/run.sh build); export $$out; \
	FEATUREPIPE_REQUIRE_S3=1 $(GO) test -race -count=1 -timeout 15m -run 'S3' ./internal/snapshot/ ./cmd/featurepipe/ ./pipeline/e2e/

## test-feast: the real Feast SDK against featurepipe (online and offline), newest and pre-0.64 releases;
## each SDK in its own venv under .cache/ (created with pip on first use). A skip fails the target.
PYTHON     ?= python3
FEAST_SDKS ?= 0.67.0 0.63.0
test-feast:
	@set -e; for v in $(FEAST_SDKS); do \
	  venv=.cache/feast-$$v; \
	  if [ ! -x $$venv/bin/feast ]; then \
	    echo "creating $$venv (pip install feast==$$v)"; rm -rf $$venv; \
	    $(PYTHON) -m venv $$venv; $$venv/bin/pip install -q feast==$$v; \
	  fi; \
	  echo "== Feast SDK $$v"; \
	  FEAST_PYTHON=$$PWD/$$venv/bin/python $(GO) test -count=1 -v -run '^TestFeastSDK$$' -timeout 15m ./pipeline/feastflight/ > .cache/test-feast-$$v.out 2>&1 || true; \
	  grep -E '^(---|ok|FAIL|panic)|feast_check|feast_sdk_test' .cache/test-feast-$$v.out || true; \
	  grep -q -- '--- PASS: TestFeastSDK' .cache/test-feast-$$v.out || { echo "TestFeastSDK did not pass with Feast $$v (see .cache/test-feast-$$v.out)"; exit 1; }; \
	done

## test-registry: confluent-kafka from PyPI (librdkafka + AvroSerializer) produces through a schema registry that
## speaks Confluent's REST API; a worker, lookups and a backfill read it. Its venv is cached under .cache/. A skip fails.
CONFLUENT_KAFKA ?= 2.16.1
test-registry:
	@set -e; venv=.cache/confluent-kafka-$(CONFLUENT_KAFKA); \
	if ! $$venv/bin/python -c 'import confluent_kafka.schema_registry.avro' 2>/dev/null; then \
	  echo "creating $$venv (pip install confluent-kafka[avro,schemaregistry]==$(CONFLUENT_KAFKA))"; rm -rf $$venv; \
	  $(PYTHON) -m venv $$venv; $$venv/bin/pip install -q "confluent-kafka[avro,schemaregistry]==$(CONFLUENT_KAFKA)"; \
	fi; \
	CONFLUENT_PYTHON=$$PWD/$$venv/bin/python $(GO) test -count=1 -v -run '^TestConfluentProducerThroughSchemaRegistry$$' -timeout 10m ./pipeline/e2e/ > .cache/test-registry.out 2>&1 || true; \
	grep -E '^(---|ok|FAIL|panic)|confluent_test' .cache/test-registry.out || true; \
	grep -q -- '--- PASS: TestConfluentProducerThroughSchemaRegistry' .cache/test-registry.out || { echo "TestConfluentProducerThroughSchemaRegistry did not pass (see .cache/test-registry.out)"; exit 1; }

## test-monitoring: promtool unit tests of every alert rule, then a real Prometheus (Debian package
## prometheus, which brings promtool) scraping a running pipeline: every dashboard query and alert
## metric returns data, and the stale-feature alert fires when a source stops. Fails if prometheus is missing.
test-monitoring:
	promtool test rules deploy/prometheus/alerts_test.yml
	promtool check config deploy/prometheus/prometheus.yml deploy/prometheus/prometheus-dev.yml
	FEATUREPIPE_TEST_PROMETHEUS=1 $(GO) test -count=1 -timeout 15m -run '^(TestMonitoringOnPrometheus|TestEveryAlertRuleHasAUnitTest)$$' -v ./pipeline/e2e/

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags browser ./pipeline/ui/

fmt:
	gofmt -w $$(git ls-files '*.go')

## bench: every figure in the README (bench-backfill is separate: it needs Python and ~10 minutes)
bench: bench-apply bench-ingest bench-lookup bench-freshness bench-coldstart bench-produce

bench-apply:
	$(GO) test -run '^$$' -bench 'Apply|Read' -benchmem ./aggregations/

## bench-ingest: without, then with feature statistics of every published value (INGEST_STATS)
bench-ingest:
	INGEST_STATS=0 $(GO) test -run '^$$' -bench 'Ingest' -benchtime 1x -timeout 20m ./pipeline/e2e/
	INGEST_STATS=1 $(GO) test -run '^$$' -bench 'Ingest' -benchtime 1x -timeout 20m ./pipeline/e2e/

## bench-replay: history replay (300,000 events over 40 days, 7 features) against a bare consumer, 3 alternated rounds
bench-replay:
	REPLAY_ROUNDS=3 $(GO) test -run '^$$' -bench 'HistoryReplay' -benchtime 1x -timeout 30m ./pipeline/e2e/

## bench-scaling: the same history per entity at 50,000 and 200,000 entities (SCALING_ENTITIES), worker and replica cost per event
bench-scaling:
	$(GO) test -run '^$$' -bench 'Scaling' -benchtime 1x -timeout 40m ./pipeline/e2e/

bench-lookup: build
	$(BIN) load --rate 20000 --duration 20s --keys 10000

## bench-lookups: wrk against a replica with default flags, one without the lookup log and catalog, and the bare server (needs wrk; ~4 minutes)
bench-lookups: build
	deploy/bench/lookups.sh

## bench-freshness: produce → visible in a lookup replica at 10,000 events/s: issue 18's 7 features (schemas/history.yaml), then the demo file
bench-freshness: build
	$(BIN) load --freshness --config schemas/history.yaml --rate 10000 --keys 5000 --duration 10s
	$(BIN) load --freshness --rate 10000 --keys 5000 --duration 10s

bench-coldstart:
	$(GO) test -run '^$$' -bench 'ColdStart' -benchtime 1x -timeout 30m ./pipeline/e2e/

## bench-produce: `featurepipe produce` of JSON lines vs a bare franz-go producer of the same records
bench-produce:
	$(GO) test -run '^$$' -bench 'Produce' -benchtime 1x -count 3 ./pipeline/produce/

## bench-backfill: 10M events, 1M spine rows, featurepipe vs DuckDB (installs duckdb in .cache/)
bench-backfill:
	deploy/bench/backfill.sh

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLookupRequest -fuzztime 60s ./pipeline/lookup/
	$(GO) test -run '^$$' -fuzz FuzzLookupBodyDecoders -fuzztime 60s ./pipeline/lookup/
	$(GO) test -run '^$$' -fuzz FuzzLookupEndpointDecoders -fuzztime 60s ./pipeline/lookup/
	$(GO) test -run '^$$' -fuzz FuzzAuthorization -fuzztime 60s ./pipeline/lookup/
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 60s ./schemas/
	$(GO) test -run '^$$' -fuzz FuzzFastDecodeEqualsGeneric -fuzztime 60s ./pipeline/events/
	$(GO) test -run '^$$' -fuzz FuzzAppendFlatJSON -fuzztime 60s ./schemas/
	$(GO) test -run '^$$' -fuzz FuzzDecodeTile -fuzztime 60s ./aggregations/

clean:
	rm -rf bin
