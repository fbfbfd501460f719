# mailpipe — every target loops over the workspace modules (scripts/modules.sh): a bare root
# ./... misses modules. `make help` lists the targets.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

MODULES := $(shell scripts/modules.sh)
CACHE ?= $(HOME)/.cache/mailpipe
GOLANGCI_VERSION ?= v2.15.0
GOLANGCI := $(CACHE)/bin/golangci-lint-$(GOLANGCI_VERSION).d/golangci-lint
# Helm for the chart checks (e2e/deploy): built from the Go module proxy, pinned, cached.
HELM_VERSION ?= v3.21.4
HELM := $(CACHE)/bin/helm-$(HELM_VERSION).d/helm
GOTEST_FLAGS ?= -race -count=1 -timeout 25m

KAFKA_PORT ?= 19092
REDIS_PORT ?= 16379
RSPAMD_PORT ?= 21333
PG_PORT ?= 15432
export MAILPIPE_TEST_KAFKA_BROKERS ?= 127.0.0.1:$(KAFKA_PORT)
export MAILPIPE_TEST_REDIS_URL ?= redis://127.0.0.1:$(REDIS_PORT)/0
export MAILPIPE_TEST_RSPAMD_URL ?= http://127.0.0.1:$(RSPAMD_PORT)
export MAILPIPE_TEST_POSTGRES_DSN ?= postgres://mailpipe:mailpipe@127.0.0.1:$(PG_PORT)/mailpipe_test?sslmode=disable

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F ':.*?## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: dev
dev: ## Run the whole pipeline in one process on embedded Kafka and Redis (mailpipe dev).
	go run ./services/mailpipe dev

.PHONY: build
build: ## Build every service binary into bin/.
	@mkdir -p bin
	cd services && for d in */; do go build -o ../bin/$${d%/} ./$${d%/}; done

.PHONY: deps
deps: ## Install what the tests need: Java, Maven, redis-server, swaks, kcat, Python interop libs.
	scripts/deps.sh

.PHONY: services-up
services-up: ## Start a real Kafka broker (KRaft), redis-server, rspamd and PostgreSQL on loopback (idempotent).
	KAFKA_PORT=$(KAFKA_PORT) KAFKA_FRESH=1 scripts/kafka-up.sh
	REDIS_PORT=$(REDIS_PORT) scripts/redis-up.sh
	RSPAMD_PORT=$(RSPAMD_PORT) scripts/rspamd-up.sh
	PG_PORT=$(PG_PORT) scripts/postgres-up.sh

.PHONY: services-down
services-down: ## Stop the services started by services-up.
	-KAFKA_PORT=$(KAFKA_PORT) scripts/kafka-down.sh
	-REDIS_PORT=$(REDIS_PORT) scripts/redis-down.sh
	-RSPAMD_PORT=$(RSPAMD_PORT) scripts/rspamd-down.sh
	-PG_PORT=$(PG_PORT) scripts/postgres-down.sh

.PHONY: unit
unit: ## Fast unit tests, no services (-short skips the integration tests).
	for m in $(MODULES); do (cd $$m && go test -race -shuffle=on -short ./...); done

.PHONY: test-integration
test-integration: ## Unit and integration tests against the running services (no e2e).
	for m in $(filter-out %/e2e,$(MODULES)); do (cd $$m && MAILPIPE_TEST_REQUIRE_SERVICES=1 go test $(GOTEST_FLAGS) ./...); done

.PHONY: e2e
e2e: ## End-to-end tests: every service as its own OS process on real Kafka and Redis.
	cd e2e && MAILPIPE_TEST_REQUIRE_SERVICES=1 go test $(GOTEST_FLAGS) ./...

.PHONY: bench
bench: ## Benchmark ingress (smtp-source and HTTP load, one 50 MiB message) on real Kafka and Redis; rewrites e2e/bench/RESULTS.md.
	scripts/deps.sh
	$(MAKE) -s services-up
	cd e2e && MAILPIPE_BENCH=1 go test -count=1 -timeout 30m -run '^TestBench$$' -v ./bench/

.PHONY: bench-parsers
bench-parsers: ## Benchmark mailpipe's parser against mailparser and postal-mime on the shared corpora, one pinned core each; rewrites e2e/bench/PARSERS.md.
	scripts/deps.sh
	cd e2e && MAILPIPE_BENCH=1 go test -count=1 -timeout 30m -run '^TestBenchParsers$$' -v ./bench/parsers/

.PHONY: bench-pipeline
bench-pipeline: ## Benchmark the five services as processes on a fresh broker of its own: no-op ceiling and real pipeline side by side at 100–2,000 msg/s, highest rate held; rewrites e2e/bench/PIPELINE.md.
	scripts/deps.sh
	cd e2e && MAILPIPE_BENCH=1 go test -count=1 -timeout 40m -run '^TestBenchPipeline$$' -v ./bench/pipeline/

.PHONY: bench-crm
bench-crm: ## Benchmark the CRM connectors (10,000 messages delivered twice each) on their contract servers and a real PostgreSQL; rewrites e2e/bench/CRM.md.
	PG_PORT=$(PG_PORT) scripts/postgres-up.sh >/dev/null
	cd e2e && MAILPIPE_BENCH=1 go test -count=1 -timeout 30m -run '^TestBenchCRM$$' -v ./bench/crm/

.PHONY: chaos
chaos: ## Reliability lab, full suite: every scenario 3× with more mail, each on a broker, Redis and CRM of its own; rewrites docs/reliability.md.
	scripts/deps.sh
	cd e2e && MAILPIPE_CHAOS=1 go test -count=1 -timeout 150m -run '^TestLab$$' -v ./lab/

.PHONY: test
test: ## Install and start what the tests need, then run every test (the README test command).
	scripts/test.sh

.PHONY: generate
generate: ## Regenerate pkg/events from schemas/*.avsc.
	cd pkg && go generate ./events/...

.PHONY: check-generated
check-generated: generate ## Fail if generated code differs from what is committed.
	git diff --exit-code -- pkg/events

.PHONY: compat
compat: ## Check every schema stays backward compatible with schemas/released/.
	cd pkg && go test -count=1 -run 'TestBackwardCompatibleWithReleased|TestCheckBackwardCatchesBreaks' ./serde/

.PHONY: tidy
tidy: ## go mod tidy in every module.
	for m in $(MODULES); do (cd $$m && GOWORK=off go mod tidy); done

.PHONY: tidy-check
tidy-check: ## Fail if any module is not tidy.
	for m in $(MODULES); do (cd $$m && GOWORK=off go mod tidy -diff); done

.PHONY: vet
vet: ## go vet every module.
	for m in $(MODULES); do (cd $$m && go vet ./...); done

$(GOLANGCI):
	GOBIN=$(dir $(GOLANGCI)) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

$(HELM):
	GOBIN=$(dir $(HELM)) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

.PHONY: helm
helm: $(HELM) ## Build the pinned Helm from the Go module proxy into ~/.cache/mailpipe/bin (e2e/deploy needs it).

.PHONY: chart
chart: $(HELM) ## helm lint and the chart, compose and Dockerfile validation tests (e2e/deploy); no cluster or Docker needed.
	$(HELM) lint --strict charts/mailpipe
	$(HELM) lint --strict charts/mailpipe -f charts/mailpipe/ci/production-values.yaml
	cd e2e && MAILPIPE_HELM=$(HELM) go test -count=1 ./deploy/

.PHONY: chart-readme
chart-readme: ## Regenerate charts/mailpipe/README.md from the # -- comments of values.yaml.
	cd e2e && go test -count=1 -run '^TestChartReadme$$' ./deploy/ -update

.PHONY: lint
lint: $(GOLANGCI) ## golangci-lint (pinned, built from the Go module proxy) over every module.
	for m in $(MODULES); do (cd $$m && $(GOLANGCI) run --config $(CURDIR)/.golangci.yml ./...); done

.PHONY: print-helm-version
print-helm-version: ## Print the pinned Helm version (scripts/test.sh).
	@echo $(HELM_VERSION)
