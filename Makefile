# camd build. `make build` puts the daemon and every plugin in bin/.
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
PLUGINS := $(notdir $(wildcard plugins/*))

.PHONY: build deps run test bench generate clean

build: deps
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/camd ./cmd/camd
	@for p in $(PLUGINS); do \
		echo "$(GO) build -o $(BIN)/camd-plugin-$$p ./plugins/$$p"; \
		$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/camd-plugin-$$p ./plugins/$$p || exit 1; \
	done

deps:
	@bash scripts/setup.sh build

# run builds and starts camd on config.yaml (a simulated camera).
run: build
	$(BIN)/camd run -config config.yaml

# test installs what the tests need (ffmpeg, chromium, ...), builds, and runs
# every test: Go (unit, end-to-end, fuzz seeds) and the firmware's Python tests.
test:
	bash scripts/test.sh

# bench runs the benchmarks whose figures go into release notes.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

generate:
	$(GO) generate ./proto/...

clean:
	rm -rf $(BIN)
