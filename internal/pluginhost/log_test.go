package pluginhost

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestLineWriter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   []string // messages logged, in order
	}{
		{"one line", []string{"hello\n"}, []string{"hello"}},
		{"split across writes", []string{"hel", "lo\nwor", "ld\n"}, []string{"hello", "world"}},
		{"CRLF", []string{"a\r\nb\r\n"}, []string{"a", "b"}},
		{"partial line flushed", []string{"tail"}, []string{"tail"}},
		{"long line cut", []string{strings.Repeat("x", maxLogLine+10) + "\n"}, []string{strings.Repeat("x", maxLogLine), strings.Repeat("x", 10)}},
		{"long line in pieces", []string{strings.Repeat("y", maxLogLine-1), "yy\n"}, []string{strings.Repeat("y", maxLogLine), "y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			h := &recorder{msgs: &got}
			w := newLineWriter(slog.New(h), slog.LevelInfo, "stdout")
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			w.Flush()
			if len(got) != len(tc.want) {
				t.Fatalf("logged %d lines, want %d: %q", len(got), len(tc.want), short(got))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("line %d = %q, want %q", i, short([]string{got[i]}), short([]string{tc.want[i]}))
				}
			}
		})
	}
}

func short(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		if len(s) > 20 {
			s = fmt.Sprintf("%s…(%d bytes)", s[:10], len(s))
		}
		out[i] = s
	}
	return out
}

// recorder is a slog.Handler that keeps the messages logged.
type recorder struct{ msgs *[]string }

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	*r.msgs = append(*r.msgs, rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }
