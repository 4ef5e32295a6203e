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

# bench runs the benchmarks whose figures go into release notes: first
# bench/ (camd relaying a stamped 640x480 30 fps MJPEG source to 1..1,000
# viewers, measured from /proc; GO2RTC=/path/to/go2rtc adds go2rtc beside
# it), then the packages' Go benchmarks. Run it on a quiet machine.
bench: build
	$(GO) run ./bench -bin $(BIN)
	$(GO) run ./bench -bin $(BIN) -webrtc
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

generate:
	$(GO) generate ./proto/...

clean:
	rm -rf $(BIN)

# install puts camd in PREFIX (default /usr/local): the daemon in bin, the
# plugins in lib/camd, config.yaml in etc/camd (a sample, with plugin_dir
# pointing at the plugins; an existing one is kept) and the systemd unit
# (deploy/camd.service) with these paths. DESTDIR stages it for a package:
#   make install PREFIX=/usr SYSCONFDIR=/etc DESTDIR=debian/camd
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
PLUGINDIR  ?= $(PREFIX)/lib/camd
SYSCONFDIR ?= $(PREFIX)/etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
# deploy/ is written for the default paths; install rewrites them.
INSTALL_PATHS := -e 's|/usr/local/bin/camd|$(BINDIR)/camd|g' \
	-e 's|/usr/local/lib/camd|$(PLUGINDIR)|g' \
	-e 's|/usr/local/etc/camd|$(SYSCONFDIR)/camd|g'

# install only copies what `make build` built: run that first as yourself
# (root's PATH often lacks go, and a build as root leaves root's files in bin/).
.PHONY: install
install:
	@for f in $(BIN)/camd $(addprefix $(BIN)/camd-plugin-,$(PLUGINS)); do \
		[ -x $$f ] || { echo "install: $$f is missing: run make build first (not as root), then make install"; exit 1; }; \
	done
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PLUGINDIR) $(DESTDIR)$(SYSCONFDIR)/camd $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BIN)/camd $(DESTDIR)$(BINDIR)/camd
	install -m 0755 $(addprefix $(BIN)/camd-plugin-,$(PLUGINS)) $(DESTDIR)$(PLUGINDIR)/
	sed $(INSTALL_PATHS) deploy/camd.service > $(DESTDIR)$(UNITDIR)/camd.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/camd/config.yaml ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/camd/config.yaml"; \
	else \
		echo "sed ... deploy/config.yaml > $(DESTDIR)$(SYSCONFDIR)/camd/config.yaml"; \
		sed $(INSTALL_PATHS) deploy/config.yaml > $(DESTDIR)$(SYSCONFDIR)/camd/config.yaml; \
	fi
