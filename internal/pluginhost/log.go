package pluginhost

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// hclogFor returns an hclog.Logger (what go-plugin wants) that forwards to
// l. go-plugin uses it for its own messages and to re-emit the JSON lines a
// plugin writes to stderr, with the plugin's level and attributes.
func hclogFor(l *slog.Logger) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "plugin", Level: hclog.Trace, Output: io.Discard})
	il.RegisterSink(slogSink{l})
	return il
}

type slogSink struct{ l *slog.Logger }

func (s slogSink) Accept(name string, lvl hclog.Level, msg string, args ...any) {
	level := slog.LevelInfo
	switch lvl {
	case hclog.Trace:
		level = slog.LevelDebug - 4
	case hclog.Debug:
		level = slog.LevelDebug
	case hclog.Warn:
		level = slog.LevelWarn
	case hclog.Error:
		level = slog.LevelError
	}
	// go-plugin appends the plugin's own "timestamp"; slog has the time.
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == "timestamp" {
			args = append(args[:i:i], args[i+2:]...)
			break
		}
	}
	s.l.Log(context.Background(), level, msg, args...)
}

// maxLogLine is where a plugin's output line is cut into pieces: a plugin
// that prints megabytes without a newline must not grow camd's memory.
const maxLogLine = 64 << 10

// lineWriter is an io.Writer that logs each line written to it, for a
// plugin's stdout and raw (non-JSON) output. It owns no goroutine, so
// nothing outlives the plugin process it was made for.
type lineWriter struct {
	l      *slog.Logger
	level  slog.Level
	stream string

	mu  sync.Mutex
	buf []byte
}

func newLineWriter(l *slog.Logger, level slog.Level, stream string) *lineWriter {
	return &lineWriter{l: l, level: level, stream: stream}
}

// Write implements io.Writer: complete lines are logged at once, a partial
// line waits for its end (or for maxLogLine bytes).
func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLogLine - len(w.buf)
			if len(p) < room {
				w.buf = append(w.buf, p...)
				break
			}
			w.buf = append(w.buf, p[:room]...)
			p = p[room:]
			w.emit()
			continue
		}
		if len(w.buf)+i > maxLogLine {
			room := maxLogLine - len(w.buf)
			w.buf = append(w.buf, p[:room]...)
			p = p[room:]
			w.emit()
			continue
		}
		w.buf = append(w.buf, p[:i]...)
		p = p[i+1:]
		w.emit()
	}
	return n, nil
}

// Flush logs a last partial line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit()
	}
}

func (w *lineWriter) emit() {
	line := bytes.TrimRight(w.buf, "\r")
	w.l.Log(context.Background(), w.level, string(line), "stream", w.stream)
	w.buf = w.buf[:0]
}
