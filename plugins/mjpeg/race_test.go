//go:build race

package main

// raceDetector is set when the race detector runs, whose own memory
// (shadow memory, never returned) makes RSS measurements meaningless.
const raceDetector = true
