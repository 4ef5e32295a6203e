package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// envRef matches a reference at the start of the text after a "$": the
// shell's (and Docker Compose's) ${VAR}, ${VAR:-default}, ${VAR-default},
// ${VAR:?message} and ${VAR?message}. Groups: name, operator, word.
var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}`)

// expandEnv replaces environment references in every scalar value of the
// document (keys are left alone), so secrets can come from the environment
// (systemd credentials, Docker secrets) instead of the file. A reference
// that cannot be expanded is an error at its line and key.
func expandEnv(path string, n *yaml.Node, lookup func(string) (string, bool)) Errors {
	var errs Errors
	var walk func(n *yaml.Node, key string)
	walk = func(n *yaml.Node, key string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, key)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", key, i))
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], joinKey(key, n.Content[i].Value))
			}
		case yaml.ScalarNode:
			if !strings.Contains(n.Value, "$") {
				return
			}
			v, whole, err := expandString(n.Value, lookup)
			if err != nil {
				errs = append(errs, &Error{File: path, Line: n.Line, Key: key, Msg: err.Error()})
				return
			}
			n.Value = v
			// The tag was resolved from the text before expansion ("${FPS}"
			// is a string). A value that is one variable, quoted or not,
			// takes the type of what it expands to (fps: "${FPS}" is a
			// number); text around a variable keeps it a string.
			if whole || n.Style == 0 {
				n.Tag, n.Style = "", 0
			}
		}
	}
	walk(n, "")
	return errs
}

// expandString expands the references in s. "$$" is a "$", and a "$" not
// followed by "{" stays as it is (bcrypt hashes start with "$2y$"). Any
// other "${" is an error: passed through, a mistyped reference such as
// ${TOKEN:?set it} would become a working secret made of its own text.
// whole reports that s is exactly one reference.
func expandString(s string, lookup func(string) (string, bool)) (out string, whole bool, err error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '$')
		if j < 0 {
			b.WriteString(s[i:])
			break
		}
		b.WriteString(s[i : i+j])
		i += j
		switch rest := s[i:]; {
		case strings.HasPrefix(rest, "$$"):
			b.WriteByte('$')
			i += 2
		case strings.HasPrefix(rest, "${"):
			m := envRef.FindStringSubmatch(rest)
			if m == nil || strings.Contains(m[3], "${") { // nesting is not supported either
				return "", false, fmt.Errorf("%q: unsupported ${...} form; use ${VAR}, ${VAR:-default} or ${VAR:?message} ($$ is a $)", snippet(rest))
			}
			v, err := lookupRef(m[1], m[2], m[3], lookup)
			if err != nil {
				return "", false, err
			}
			b.WriteString(v)
			i += len(m[0])
			whole = len(m[0]) == len(s)
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), whole, nil
}

// lookupRef gives one reference its shell meaning: with ':' an empty
// variable counts as unset; '-' supplies a default, '?' makes it an error
// carrying the user's message. Plain ${VAR} must be set and non-empty,
// since an empty secret is never meant.
func lookupRef(name, op, word string, lookup func(string) (string, bool)) (string, error) {
	v, set := lookup(name)
	missing := !set || (v == "" && op != "-" && op != "?")
	if !missing {
		return v, nil
	}
	state := "is not set"
	if set {
		state = "is empty"
	}
	switch op {
	case ":-", "-":
		return word, nil
	case ":?", "?":
		if word == "" {
			word = "required"
		}
		return "", fmt.Errorf("environment variable %s %s: %s", name, state, word)
	}
	return "", fmt.Errorf("environment variable %s %s (set it, or give a default: ${%s:-value})", name, state, name)
}

// snippet is the reference s starts with, for an error message.
func snippet(s string) string {
	if i := strings.IndexByte(s, '}'); i >= 0 {
		s = s[:i+1]
	}
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

func joinKey(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// osLookup is the real environment.
func osLookup(name string) (string, bool) { return os.LookupEnv(name) }
