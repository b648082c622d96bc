# featurepipe: `make run` runs the whole pipeline on the embedded broker,
# `make test` runs every test. See README.md.
GO       ?= go
BIN      := bin/featurepipe
PKGS     := ./...

.PHONY: all build run test test-kafka test-feast bench bench-apply bench-ingest bench-lookup bench-coldstart bench-backfill fmt lint fuzz clean

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

## test-kafka: the end-to-end suite against a real Apache Kafka 4.x broker (needs Java 17 and Maven)
test-kafka:
	@set -e; out=$$(deploy/kafka/run.sh start); export $$out; \
	trap 'deploy/kafka/run.sh stop' EXIT; \
	echo "running the end-to-end suite against Apache Kafka at $$KAFKA_BROKERS"; \
	$(GO) test -count=1 -timeout 20m ./pipeline/e2e/... ./pipeline/backfill/... ./pipeline/skew/... ./pipeline/registry/... ./internal/kafka/...

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

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## bench: every figure in the README (bench-backfill is separate: it needs Python and ~10 minutes)
bench: bench-apply bench-ingest bench-lookup bench-coldstart

bench-apply:
	$(GO) test -run '^$$' -bench 'Apply|Read' -benchmem ./aggregations/

bench-ingest:
	$(GO) test -run '^$$' -bench 'Ingest' -benchtime 1x -timeout 20m ./pipeline/e2e/

bench-lookup: build
	$(BIN) load --rate 20000 --duration 20s --keys 10000

bench-coldstart:
	$(GO) test -run '^$$' -bench 'ColdStart' -benchtime 1x -timeout 30m ./pipeline/e2e/

## bench-backfill: 10M events, 1M spine rows, featurepipe vs DuckDB (installs duckdb in .cache/)
bench-backfill:
	deploy/bench/backfill.sh

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLookupRequest -fuzztime 60s ./pipeline/lookup/
	$(GO) test -run '^$$' -fuzz FuzzAuthorization -fuzztime 60s ./pipeline/lookup/
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 60s ./schemas/
	$(GO) test -run '^$$' -fuzz FuzzDecodeTile -fuzztime 60s ./aggregations/

clean:
	rm -rf bin
