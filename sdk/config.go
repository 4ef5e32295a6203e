package sdk

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ConfigError is a problem with one key of a plugin's config block.
type ConfigError struct {
	Key     string // dotted path within the block, e.g. "whip.url"; empty for the whole block
	Message string
	Line    int // line within the decoded YAML, when known
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return e.Message
	}
	return e.Key + ": " + e.Message
}

// Errorf returns a ConfigError for key.
func Errorf(key, format string, args ...any) *ConfigError {
	return &ConfigError{Key: key, Message: fmt.Sprintf(format, args...)}
}

// ConfigErrors collects several ConfigError so a user sees all problems at once.
type ConfigErrors []*ConfigError

func (es ConfigErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Err returns es as an error, or nil when it is empty.
func (es ConfigErrors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// AsConfigErrors turns any error from Configure into ConfigErrors.
func AsConfigErrors(err error) ConfigErrors {
	if err == nil {
		return nil
	}
	var es ConfigErrors
	if errors.As(err, &es) {
		return es
	}
	var e *ConfigError
	if errors.As(err, &e) {
		return ConfigErrors{e}
	}
	return ConfigErrors{{Message: err.Error()}}
}

// DecodeConfig decodes a YAML config block into v, a pointer to a struct
// with `yaml` tags, strictly: unknown keys and values of the wrong type are
// reported as ConfigErrors naming the key. Fields absent from raw keep the
// values v already holds, so set defaults before calling it.
func DecodeConfig(raw []byte, v any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return ConfigErrors{{Message: yamlMessage(err)}}
	}
	if len(doc.Content) == 0 {
		return nil // empty block: all defaults
	}
	return DecodeNode(doc.Content[0], v, nil).Err()
}

// DecodeNode is DecodeConfig on a parsed node. If lines is not nil it
// records the line of every key path it decodes ("cameras[0].source.url"),
// so a caller's own validation errors can point at the file too.
func DecodeNode(n *yaml.Node, v any, lines map[string]int) ConfigErrors {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	d := decoder{lines: lines}
	d.decode(n, reflect.ValueOf(v).Elem(), "")
	return d.errs
}

type decoder struct {
	errs  ConfigErrors
	lines map[string]int
}

func (d *decoder) fail(n *yaml.Node, path, msg string) {
	d.errs = append(d.errs, &ConfigError{Key: path, Message: msg, Line: n.Line})
}

var nodeType = reflect.TypeFor[yaml.Node]()

// decode decodes n into rv. Structs (and slices of structs) are walked key
// by key so each error knows its key and line; other values are left to
// yaml.v3.
func (d *decoder) decode(n *yaml.Node, rv reflect.Value, path string) {
	if rv.Type() == nodeType {
		rv.Set(reflect.ValueOf(*n))
		return
	}
	if rv.Kind() == reflect.Pointer && rv.Type().Elem().Kind() == reflect.Struct && !implementsUnmarshaler(rv.Type()) {
		if n.Tag == "!!null" {
			rv.Set(reflect.Zero(rv.Type()))
			return
		}
		if rv.IsNil() {
			rv.Set(reflect.New(rv.Type().Elem()))
		}
		rv = rv.Elem()
	}
	if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Struct && !implementsUnmarshaler(reflect.PointerTo(rv.Type().Elem())) {
		if n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "must be a list")
			return
		}
		s := reflect.MakeSlice(rv.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if d.lines != nil {
				d.lines[p] = item.Line
			}
			d.decode(item, s.Index(i), p)
		}
		rv.Set(s)
		return
	}
	if rv.Kind() != reflect.Struct || implementsUnmarshaler(rv.Addr().Type()) {
		if err := n.Decode(rv.Addr().Interface()); err != nil {
			d.fail(n, path, yamlMessage(err))
		}
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "must be a mapping of keys to values")
		return
	}
	fields := yamlFields(rv)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, val := n.Content[i], n.Content[i+1]
		p := kn.Value
		if path != "" {
			p = path + "." + kn.Value
		}
		if first, dup := seen[kn.Value]; dup {
			d.fail(kn, p, fmt.Sprintf("duplicate key (first at line %d)", first))
			continue
		}
		seen[kn.Value] = kn.Line
		f, ok := fields[kn.Value]
		if !ok {
			d.fail(kn, p, "unknown key (known: "+strings.Join(sortedKeys(fields), ", ")+")")
			continue
		}
		if d.lines != nil {
			d.lines[p] = kn.Line
		}
		d.decode(val, f, p)
	}
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func implementsUnmarshaler(t reflect.Type) bool { return t.Implements(unmarshalerType) }

// yamlFields maps yaml key names to the fields of struct rv, following
// `yaml:",inline"` embedded structs.
func yamlFields(rv reflect.Value) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	t := rv.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(rv.Field(i)) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		out[name] = rv.Field(i)
	}
	return out
}

func sortedKeys(m map[string]reflect.Value) []string {
	return slices.Sorted(maps.Keys(m))
}

// yamlMessage strips yaml.v3's "yaml: unmarshal errors: line N:" framing,
// which refers to the re-encoded block, not the user's file.
func yamlMessage(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if strings.HasPrefix(msg, "line ") {
			if _, rest, ok := strings.Cut(msg, ": "); ok {
				msg = rest
			}
		}
		return msg
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// Duration is a time.Duration that reads from YAML as "500ms", "10s", "2h"
// or with a day suffix, "7d".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ParseDuration is time.ParseDuration plus a "d" (24h) unit: "7d", "1d12h".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	whole := s
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || math.IsNaN(n) {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		// Beyond that a Duration wraps around (to a negative one).
		if math.Abs(n) > float64(math.MaxInt64/int64(24*time.Hour)) {
			return 0, fmt.Errorf("duration %q too large (at most %dd, about 292 years)", s, math.MaxInt64/int64(24*time.Hour))
		}
		days = time.Duration(n * float64(24*time.Hour))
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 500ms, 10s, 5m, 7d)", s)
	}
	if (days > 0 && v > math.MaxInt64-days) || (days < 0 && v < math.MinInt64-days) {
		return 0, fmt.Errorf("duration %q too large (at most %dd, about 292 years)", whole, math.MaxInt64/int64(24*time.Hour))
	}
	return days + v, nil
}

// ByteSize is a size in bytes that reads from YAML as "512MB", "1GB",
// "64KiB" or a plain number of bytes.
type ByteSize int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = ByteSize(v)
	return nil
}

// ParseByteSize reads sizes like "1GB" (10^9), "1GiB" (2^30) or "4096".
func ParseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1},
	}
	mult := int64(1)
	num := s
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)) && len(s) > len(u.suffix) {
			num = strings.TrimSpace(s[:len(s)-len(u.suffix)])
			mult = u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid size %q (use e.g. 512MB, 1GB)", s)
	}
	return int64(f * float64(mult)), nil
}
