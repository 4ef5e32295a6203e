// Package redact hides secrets in text before it is logged or shown:
// passwords in URLs, token-like query parameters, Authorization values, and
// any secret camd knows by value (a camera's token, a URL's password).
// Everything camd logs goes through Handler, and every error text it shows
// in /api/status goes through a Redactor, so a secret in config.yaml never
// reaches a log file or a browser.
package redact

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
)

// Mask replaces a secret.
const Mask = "***"

var (
	// scheme://user:password@ — the password goes, the user stays.
	userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@"']*:)[^@\s/"']*@`)
	// token=..., password=..., key=... in query strings and key=value text.
	// Cheap cameras name theirs loginpas, pwd, psw or pw.
	paramRE = regexp.MustCompile(`(?i)((?:^|[?&;\s"'])(?:[a-z0-9_-]*token|[a-z0-9_-]*pas[a-z0-9_]*|[a-z0-9_-]*pwd|psw|pw|secret|key|api_?key|auth|sig|signature|credential)=)[^&\s"';]*`)
	// Authorization header values.
	authRE = regexp.MustCompile(`(?i)((?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+`)
)

// Redactor hides secrets in strings. The zero value hides what the
// patterns find; SetSecrets adds secrets known by value. It is safe for
// concurrent use, and the secrets can change while it is in use (a config
// reload).
type Redactor struct {
	secrets atomic.Pointer[[]string] // longest first, so a secret containing another goes whole
}

// New returns a Redactor that also hides each of secrets.
func New(secrets ...string) *Redactor {
	r := &Redactor{}
	r.SetSecrets(secrets...)
	return r
}

// SetSecrets replaces the secrets hidden by value wherever they appear.
// Empty strings and very short values (which would mask ordinary words)
// are ignored; the patterns still catch them in URLs.
func (r *Redactor) SetSecrets(secrets ...string) {
	var list []string
	for _, s := range secrets {
		if len(s) >= 4 && !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	slices.SortFunc(list, func(a, b string) int { return len(b) - len(a) })
	r.secrets.Store(&list)
}

// SecretsOfURL returns the secrets a URL carries: its password and the
// values of token-like query parameters, for New.
func SecretsOfURL(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	if p, ok := u.User.Password(); ok {
		out = append(out, p)
	}
	for k, vs := range u.Query() {
		if paramRE.MatchString("?" + k + "=x") {
			out = append(out, vs...)
		}
	}
	return out
}

// String returns s with every secret replaced by Mask.
func (r *Redactor) String(s string) string {
	if r != nil {
		if list := r.secrets.Load(); list != nil {
			for _, sec := range *list {
				s = strings.ReplaceAll(s, sec, Mask)
			}
		}
	}
	if strings.Contains(s, "@") {
		s = userinfoRE.ReplaceAllString(s, "${1}"+Mask+"@")
	}
	if strings.Contains(s, "=") {
		s = paramRE.ReplaceAllString(s, "${1}"+Mask)
	}
	s = authRE.ReplaceAllString(s, "${1}"+Mask)
	return s
}

// JSON returns the JSON document raw with every string in it (not the
// keys) passed through String, or nil if raw is not JSON. It is for what
// plugins report about themselves: a plugin's status may hold a URL from
// its config, with its password.
func (r *Redactor) JSON(raw []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // numbers stay as they were written
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	out, err := json.Marshal(r.value(v))
	if err != nil {
		return nil
	}
	return out
}

func (r *Redactor) value(v any) any {
	switch v := v.(type) {
	case string:
		return r.String(v)
	case []any:
		for i := range v {
			v[i] = r.value(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = r.value(v[k])
		}
	}
	return v
}

// Handler wraps h so that every message and attribute value it writes has
// passed through r.
func Handler(h slog.Handler, r *Redactor) slog.Handler { return &handler{h: h, r: r} }

type handler struct {
	h slog.Handler
	r *Redactor
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.h.Handle(ctx, out)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = h.attr(a)
	}
	return &handler{h: h.h.WithAttrs(red), r: h.r}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{h: h.h.WithGroup(name), r: h.r}
}

// attr redacts a's value: strings, errors and anything else printed as
// text (a URL, a struct) become redacted strings; numbers and times stay.
func (h *handler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.r.String(v.String()))
	case slog.KindGroup:
		as := v.Group()
		red := make([]slog.Attr, len(as))
		for i, g := range as {
			red[i] = h.attr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	case slog.KindAny:
		return slog.String(a.Key, h.r.String(v.String()))
	}
	return slog.Attr{Key: a.Key, Value: v}
}
