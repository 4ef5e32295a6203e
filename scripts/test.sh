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
if [ -d firmware/tests ]; then
  python3 -m unittest discover -s firmware/tests -t firmware/tests
fi
