package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/pion/logging"
)

// pionLogs routes pion's logs to the plugin's slog logger, one logger
// per scope ("ice", "dtls", …) for the whole plugin. pion's default makes
// five log.Loggers per scope per peer connection (about 10 KB a viewer)
// and writes to stderr past camd's log format. Its errors, which a
// stranger's packets can cause, come out as warnings; its warnings and
// info at debug; trace never.
type pionLogs struct {
	log    *slog.Logger
	mu     sync.Mutex
	scopes map[string]*pionLogger
}

func newPionLogs(log *slog.Logger) *pionLogs {
	return &pionLogs{log: log, scopes: map[string]*pionLogger{}}
}

// NewLogger implements logging.LoggerFactory.
func (f *pionLogs) NewLogger(scope string) logging.LeveledLogger {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.scopes[scope]
	if l == nil {
		l = &pionLogger{log: f.log.With("pion", scope)}
		f.scopes[scope] = l
	}
	return l
}

// pionLogger is one scope's logger.
type pionLogger struct{ log *slog.Logger }

func (l *pionLogger) out(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

// outf formats only what is logged.
func (l *pionLogger) outf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l *pionLogger) Trace(string)              {}
func (l *pionLogger) Tracef(string, ...any)     {}
func (l *pionLogger) Debug(m string)            { l.out(slog.LevelDebug-4, m) }
func (l *pionLogger) Debugf(f string, a ...any) { l.outf(slog.LevelDebug-4, f, a...) }
func (l *pionLogger) Info(m string)             { l.out(slog.LevelDebug, m) }
func (l *pionLogger) Infof(f string, a ...any)  { l.outf(slog.LevelDebug, f, a...) }
func (l *pionLogger) Warn(m string)             { l.out(slog.LevelDebug, m) }
func (l *pionLogger) Warnf(f string, a ...any)  { l.outf(slog.LevelDebug, f, a...) }
func (l *pionLogger) Error(m string)            { l.out(slog.LevelWarn, m) }
func (l *pionLogger) Errorf(f string, a ...any) { l.outf(slog.LevelWarn, f, a...) }
