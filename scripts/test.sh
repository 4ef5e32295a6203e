#!/usr/bin/env bash
# test.sh runs every camd test on a fresh Debian/Ubuntu machine with Go:
# it installs what the tests need, builds, and runs the Go suite (unit,
# end-to-end with real processes, browser and ffmpeg clients, fuzz seed
# corpora) and the firmware's Python tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh test
make build
go vet ./...
go test -count=1 -timeout 20m ./...
# The frame path's concurrency once more under the race detector.
go test -race -count=1 -timeout 20m ./internal/router ./internal/pluginhost ./internal/rawio ./sdk/...
if [ -d firmware/tests ]; then
  python3 -m unittest discover -s firmware/tests -t firmware/tests
fi
