// Package e2e holds camd's end-to-end tests: they build the real daemon and
// plugin binaries, run camd as a subprocess on a generated config, and watch
// it with real clients (ffmpeg/ffprobe, Go's HTTP and multipart readers).
package e2e
