package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// envRE matches ${VAR} and ${VAR:-default}; $$ is a literal $.
var envRE = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default} in every scalar value of
// the document (keys are left alone), so secrets can come from the
// environment (systemd credentials, Docker secrets) instead of the file.
// An unset variable without a default is an error at its line.
func expandEnv(path string, n *yaml.Node, lookup func(string) (string, bool)) Errors {
	var errs Errors
	var walk func(n *yaml.Node, isKey bool)
	walk = func(n *yaml.Node, isKey bool) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, false)
			}
		case yaml.MappingNode:
			for i, c := range n.Content {
				walk(c, i%2 == 0)
			}
		case yaml.ScalarNode:
			if isKey || !strings.Contains(n.Value, "$") {
				return
			}
			whole := envRE.FindString(n.Value) == n.Value && n.Value != "$$"
			n.Value = envRE.ReplaceAllStringFunc(n.Value, func(m string) string {
				if m == "$$" {
					return "$"
				}
				sub := envRE.FindStringSubmatch(m)
				if v, ok := lookup(sub[1]); ok && v != "" {
					return v
				}
				if strings.Contains(m, ":-") {
					return sub[2]
				}
				errs = append(errs, &Error{File: path, Line: n.Line, Msg: fmt.Sprintf("environment variable %s is not set (set it, or give a default: ${%s:-value})", sub[1], sub[1])})
				return ""
			})
			// The tag was resolved from the text before expansion ("${FPS}"
			// is a string). A value that is one variable, quoted or not,
			// takes the type of what it expands to (fps: "${FPS}" is a
			// number); text around a variable keeps it a string.
			if whole || n.Style == 0 {
				n.Tag, n.Style = "", 0
			}
		}
	}
	walk(n, false)
	return errs
}

// osLookup is the real environment.
func osLookup(name string) (string, bool) { return os.LookupEnv(name) }
