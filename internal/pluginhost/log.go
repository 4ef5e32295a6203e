package pluginhost

import (
	"bufio"
	"context"
	"io"
	"log/slog"

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

// lineLogger is an io.Writer that logs each line written to it, for a
// plugin's stdout and for raw (non-JSON) output.
func lineLogger(l *slog.Logger, level slog.Level, stream string) io.WriteCloser {
	r, w := io.Pipe()
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.Log(context.Background(), level, sc.Text(), "stream", stream)
		}
	}()
	return w
}
