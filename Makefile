# Two commands do all set-up: `make run` (serve) and `make test` (the whole suite). See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
HAND_WRITTEN := server client tests api/generate.py bench demo

.PHONY: run test host-deps containerd2 test-host-deps venv lint typecheck buf-lint generate check-generate pytest bench clean

## Debian packages the service needs (containerd, runc); installed only when missing.
host-deps:
	@missing=""; \
	command -v containerd >/dev/null || missing="$$missing containerd"; \
	command -v runc >/dev/null || missing="$$missing runc"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

## The tests also build an image around a static busybox, so containers really run.
test-host-deps: host-deps
	@if [ ! -x /bin/busybox ] || ! dpkg -s busybox-static >/dev/null 2>&1; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends busybox-static; \
	fi
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm; \
	fi

$(STAMP): pyproject.toml constraints.txt
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

venv: $(STAMP)

## containerd 2.x beside Debian's 1.6: `go install` of the pinned release (tools/containerd-v2.version) into
## .tools/containerd-<version>/bin, built once per pin; Go's own build and module caches stay where Go keeps them.
CONTAINERD2_VERSION := $(shell cat tools/containerd-v2.version)
CONTAINERD2_DIR := .tools/containerd-$(CONTAINERD2_VERSION)
CONTAINERD2_TAGS := no_btrfs no_devmapper no_zfs
CONTAINERD2_CMDS := containerd ctr containerd-shim-runc-v2
GO ?= $(or $(shell command -v go),/usr/local/go/bin/go)

containerd2: $(CONTAINERD2_DIR)/.built

$(CONTAINERD2_DIR)/.built: | host-deps
	@test -x "$(GO)" || { echo "Go is needed to build containerd $(CONTAINERD2_VERSION) (set GO=/path/to/go)"; exit 1; }
	rm -rf $(CONTAINERD2_DIR).tmp && mkdir -p $(CONTAINERD2_DIR).tmp/bin
	CGO_ENABLED=0 GOBIN=$(CURDIR)/$(CONTAINERD2_DIR).tmp/bin GOFLAGS=-buildvcs=false $(GO) install \
	  -tags "$(CONTAINERD2_TAGS)" $(foreach c,$(CONTAINERD2_CMDS),github.com/containerd/containerd/v2/cmd/$(c)@$(CONTAINERD2_VERSION))
	touch $(CONTAINERD2_DIR).tmp/.built
	find .tools -maxdepth 1 -name 'containerd-v2*' ! -name 'containerd-$(CONTAINERD2_VERSION).tmp' -exec rm -rf {} +
	mv $(CONTAINERD2_DIR).tmp $(CONTAINERD2_DIR)

## Serve on 127.0.0.1:50051 against a private containerd (flags after ARGS=..., or IMAGEREMOVAL_* variables).
## Debian's containerd by default; `make run CONTAINERD=2` starts the pinned 2.x build instead (its bin dir first
## on PATH, so its own ctr and shim are used too). Once serving, it prints three commands to try on a sample image
## it builds from Debian's static busybox.
CONTAINERD ?= 1.6
run: host-deps busybox-dep venv $(if $(filter 2,$(CONTAINERD)),containerd2)
	@$(BIN)/python -m demo sample >/dev/null
	@$(BIN)/python -m demo hints $(ARGS) & \
	$(if $(filter 2,$(CONTAINERD)),PATH="$(CURDIR)/$(CONTAINERD2_DIR)/bin:$$PATH") exec $(BIN)/imageremoval-server $(ARGS)

## Sample images for every kind of answer (one with a running container) in `make run`'s containerd.
demo: busybox-dep venv
	$(BIN)/python -m demo load $(ARGS)

busybox-dep:
	@if [ ! -x /bin/busybox ] || ! dpkg -s busybox-static >/dev/null 2>&1; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends busybox-static; \
	fi

## Everything CI checks: lint, generated code, types, API lint, then pytest against a real containerd.
test: test-host-deps venv lint check-generate typecheck buf-lint buf-breaking node-deps go-client-deps java-client-deps deploy-deps helm image pytest

lint: venv
	$(BIN)/ruff check $(wildcard $(HAND_WRITTEN))
	$(BIN)/ruff format --check $(wildcard $(HAND_WRITTEN))

typecheck: venv
	$(BIN)/mypy $(wildcard $(HAND_WRITTEN))

buf-lint: venv
	$(BIN)/buf lint

generate: venv
	$(BIN)/python api/generate.py

check-generate: venv
	$(BIN)/python api/generate.py --check

## The suite once per containerd version (IMAGEREMOVAL_TEST_CONTAINERD, read by tests/conftest.py); every
## version runs even if an earlier one failed, and the target fails if any did.
CONTAINERD_VERSIONS ?= 1.6 2
pytest: venv $(if $(filter 2,$(CONTAINERD_VERSIONS)),containerd2)
	@failed=""; for version in $(CONTAINERD_VERSIONS); do \
	  echo "=== pytest against containerd $$version (IMAGEREMOVAL_TEST_CONTAINERD=$$version) ==="; \
	  IMAGEREMOVAL_TEST_CONTAINERD=$$version $(BIN)/pytest $(PYTEST_ARGS) || failed="$$failed $$version"; \
	done; \
	if [ -n "$$failed" ]; then echo "pytest failed against containerd:$$failed"; exit 1; fi

bench: host-deps venv
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache .tools

.PHONY: node-deps buf-breaking

## The Node.js client test's npm packages, exactly as locked; reinstalled only when the lock file changes.
node-deps: tests/node/node_modules/.package-lock.json

tests/node/node_modules/.package-lock.json: tests/node/package-lock.json | test-host-deps
	npm ci --prefix tests/node --no-audit --no-fund
	touch $@

## API changes that would break generated clients fail against the last released API (api/released/).
buf-breaking: venv
	$(BIN)/buf breaking --against api/released/imageremoval-v1.binpb

.PHONY: go-client-deps java-client-deps

## The Go client test's code generators and grpcurl (for the reflection test), pinned, with `go install` (rebuilt
## when a pin changes); `go test` takes the test module's dependencies as tests/go/go.sum locks them, into Go's
## own module cache.
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPCURL_VERSION := v1.9.4
GO_PLUGINS_STAMP := .tools/go-plugins/.built-$(PROTOC_GEN_GO_VERSION)-$(PROTOC_GEN_GO_GRPC_VERSION)-$(GRPCURL_VERSION)

go-client-deps: $(GO_PLUGINS_STAMP)

$(GO_PLUGINS_STAMP):
	@test -x "$(GO)" || { echo "Go is needed for the Go client test (set GO=/path/to/go)"; exit 1; }
	rm -rf .tools/go-plugins && mkdir -p .tools/go-plugins/bin
	CGO_ENABLED=0 GOBIN=$(CURDIR)/.tools/go-plugins/bin $(GO) install \
	  google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	CGO_ENABLED=0 GOBIN=$(CURDIR)/.tools/go-plugins/bin $(GO) install \
	  google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	CGO_ENABLED=0 GOBIN=$(CURDIR)/.tools/go-plugins/bin $(GO) install \
	  github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	touch $@

## The Java client test's toolchain (Debian's JDK and Maven when missing) and its Maven artifacts (plugins, protoc,
## grpc-java's generator, libraries) fetched into ~/.m2 once per pom.xml; the test itself runs `mvn -q test`.
JAVA_STAMP := .tools/java-client/.fetched-$(shell sha256sum tests/java/pom.xml | cut -c1-12)

java-client-deps: $(JAVA_STAMP)

$(JAVA_STAMP):
	@if ! command -v mvn >/dev/null || ! command -v javac >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends maven default-jdk-headless; \
	fi
	mvn -q -B -f tests/java/pom.xml test-compile
	rm -rf .tools/java-client && mkdir -p .tools/java-client && touch $@

.PHONY: deploy-deps helm manifests image demo busybox-dep

## Debian tools the deployment tests use: nginx (proxy test), systemd-analyze (unit test), mmdebstrap and umoci
## (container image). nginx is installed with its service start blocked, so no port 80 is ever bound.
deploy-deps:
	@missing=""; \
	command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v mmdebstrap >/dev/null || missing="$$missing mmdebstrap"; \
	command -v umoci >/dev/null || missing="$$missing umoci"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  blocker=/usr/sbin/policy-rc.d; placed=""; \
	  if [ ! -e $$blocker ]; then printf '#!/bin/sh\nexit 101\n' >$$blocker && chmod 755 $$blocker && placed=1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  status=$$?; [ -n "$$placed" ] && rm -f $$blocker; exit $$status; \
	fi

## helm, built from its Go module (the Go module proxy is reachable, prebuilt binaries are not); kept per version.
HELM_VERSION := v3.22.0
HELM := build/tools/helm-$(HELM_VERSION)
helm: $(HELM)
$(HELM):
	mkdir -p build/tools
	GOBIN=$(CURDIR)/build/tools/.go-$(HELM_VERSION) $(GO) install -ldflags '-s -w' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv build/tools/.go-$(HELM_VERSION)/helm $@ && rmdir build/tools/.go-$(HELM_VERSION)
	ln -sf $(notdir $@) build/tools/helm

## The plain manifests in deploy/kubernetes are the chart rendered for k8s and k3s (tests/test_chart.py checks).
manifests: $(HELM)
	mkdir -p deploy/kubernetes/k3s
	$(HELM) template imageremoval deploy/helm/imageremoval --kube-version 1.30.0 >deploy/kubernetes/imageremoval.yaml
	$(HELM) template imageremoval deploy/helm/imageremoval --kube-version 1.30.0 \
	  -f deploy/helm/imageremoval/values-k3s.yaml >deploy/kubernetes/k3s/imageremoval.yaml

## The service's OCI image (deploy/image/build.sh), rebuilt only when its inputs change: the key hashes the
## build script, pyproject.toml and every source file that goes into the wheel.
IMAGE_INPUTS := deploy/image/build.sh pyproject.toml constraints.txt LICENSE README.md $(shell find server client api/python -type f \( -name '*.py' -o -name '*.pyi' -o -name py.typed \) -not -path '*/__pycache__/*' 2>/dev/null | sort)
IMAGE_KEY := $(shell cat $(IMAGE_INPUTS) | sha256sum | cut -c1-12)
IMAGE_TAR := build/image/imageremoval-$(IMAGE_KEY).oci.tar
image: deploy-deps venv
	@if [ -f $(IMAGE_TAR) ]; then echo "image up to date: $(IMAGE_TAR)"; else \
	  rm -f build/image/imageremoval-*.oci.tar; \
	  start=$$(date +%s); deploy/image/build.sh $(IMAGE_TAR) && \
	  echo "image built in $$(( $$(date +%s) - start )) s"; fi
	@ln -sf $(notdir $(IMAGE_TAR)) build/image/imageremoval.oci.tar
