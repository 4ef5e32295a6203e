package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// parseDocuments parses every YAML document in data (yaml.Unmarshal reads
// only the first, silently dropping anything after a "---").
func parseDocuments(data []byte) ([]*yaml.Node, error) {
	var docs []*yaml.Node
	d := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := d.Decode(&doc); errors.Is(err, io.EOF) {
			return docs, nil
		} else if err != nil {
			return nil, err
		}
		docs = append(docs, &doc)
	}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblem matches yaml.v3's parser (not scanner) errors, whose line
// it reports counting from 0.
var parserProblem = regexp.MustCompile(`^(did not find expected|found (duplicate|incompatible|undefined) )`)

// syntaxError places a yaml.v3 syntax error in the file.
func syntaxError(path string, data []byte, err error) *Error {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		// Reader errors (bad UTF-8, control characters) have no line.
		if line, msg := badChar(data); line > 0 {
			return &Error{File: path, Line: line, Msg: msg}
		}
		return &Error{File: path, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	shift := 0 // what turns yaml.v3's line into the real one
	if parserProblem.MatchString(msg) {
		shift = 1
	}
	// yaml.v3 takes line 0 (the first) for "unknown" and then reports where
	// it gave up instead, e.g. the end of the file for a quote opened on
	// line 1. One line down, the first line is line 1; take that answer.
	if _, err2 := parseDocuments(append([]byte("\n"), data...)); err2 != nil {
		if m2 := yamlLine.FindStringSubmatch(err2.Error()); m2 != nil && m2[2] == msg {
			line, _ = strconv.Atoi(m2[1])
			line--
		}
	}
	if msg == "found unexpected end of stream" { // yaml.v3 drops "while scanning a quoted scalar"
		msg = "this quoted string is never closed (no closing quote before the end of the file)"
	}
	return &Error{File: path, Line: line + shift, Msg: msg}
}

// badChar finds the first byte yaml.v3's reader refuses: invalid UTF-8 or a
// character YAML does not allow (the C0 controls but tab, CR and LF; DEL;
// the C1 controls but NEL; surrogates; U+FFFE and U+FFFF).
func badChar(data []byte) (line int, msg string) {
	line = 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return line, fmt.Sprintf("invalid UTF-8 (byte 0x%02x): save the file as UTF-8", data[i])
		case r == '\n':
			line++
		case r == '\t' || r == '\r' || r == 0x85:
		case r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0xfffe || r == 0xffff:
			return line, fmt.Sprintf("control character %U is not allowed (in a double-quoted string, write it as an escape such as \\x%02x)", r, r)
		}
		i += size
	}
	return 0, ""
}

// maxNodes bounds a document once its aliases are expanded: a few aliases
// of aliases can stand for billions of values ("billion laughs").
const maxNodes = 100_000

// resolveRefs replaces every alias (*name) with the node it names and
// every merge key (<<: *name) with the keys it merges, as yaml.v3 does
// when it decodes into Go values itself. camd's strict decoder walks the
// nodes key by key, and would otherwise see an alias where it wants a
// mapping, and "<<" as an unknown key. Nodes end up shared, not copied.
func resolveRefs(path string, doc *yaml.Node) Errors {
	r := resolver{path: path, state: map[*yaml.Node]int{}}
	r.resolve(doc, "")
	if len(r.errs) == 0 && treeSize(doc, map[*yaml.Node]int{}) > maxNodes {
		r.errs = append(r.errs, &Error{File: path, Msg: fmt.Sprintf("aliases expand to more than %d values", maxNodes)})
	}
	return r.errs
}

type resolver struct {
	path  string
	state map[*yaml.Node]int // resolving (1) or resolved (2)
	errs  Errors
}

func (r *resolver) fail(n *yaml.Node, key, msg string) {
	r.errs = append(r.errs, &Error{File: r.path, Line: n.Line, Key: key, Msg: msg})
}

// resolve returns what n stands for, with the nodes under it resolved.
func (r *resolver) resolve(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		if r.state[n.Alias] == 1 {
			r.fail(n, key, fmt.Sprintf("*%s is inside the value it names", n.Value))
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
		}
		n = n.Alias
	}
	if r.state[n] != 0 {
		return n
	}
	r.state[n] = 1
	switch n.Kind {
	case yaml.DocumentNode:
		for i, c := range n.Content {
			n.Content[i] = r.resolve(c, key)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			n.Content[i] = r.resolve(c, fmt.Sprintf("%s[%d]", key, i))
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			n.Content[i] = r.resolve(n.Content[i], joinKey(key, n.Content[i-1].Value))
		}
		r.merge(n, key)
	}
	n.Anchor = "" // no alias refers to it any more (and re-encoded, it would be defined twice)
	r.state[n] = 2
	return n
}

// merge applies the merge keys of mapping n: n gets each key of the
// merged mappings that it does not set itself, the first mapping winning
// (YAML's merge rule, as yaml.v3 applies it).
func (r *resolver) merge(n *yaml.Node, key string) {
	var own, from []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!merge" {
			own = append(own, k, v)
			continue
		}
		srcs := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			srcs = v.Content
		}
		for _, s := range srcs {
			if s.Kind != yaml.MappingNode {
				r.fail(k, joinKey(key, "<<"), "merges a mapping or a list of mappings, e.g. <<: *defaults")
				return
			}
		}
		from = append(from, srcs...)
	}
	if len(own) == len(n.Content) {
		return // no merge key
	}
	set := map[string]bool{}
	for i := 0; i < len(own); i += 2 {
		set[own[i].Value] = true
	}
	for _, s := range from {
		for i := 0; i+1 < len(s.Content); i += 2 {
			if k := s.Content[i]; !set[k.Value] {
				set[k.Value] = true
				own = append(own, k, s.Content[i+1])
			}
		}
	}
	n.Content = own
}

// treeSize counts the nodes of n as a tree (shared nodes once per use),
// stopping soon after maxNodes.
func treeSize(n *yaml.Node, memo map[*yaml.Node]int) int {
	if s, ok := memo[n]; ok {
		return s
	}
	s := 1
	for _, c := range n.Content {
		if s += treeSize(c, memo); s > maxNodes {
			break
		}
	}
	memo[n] = s
	return s
}

// nodeLine finds the line of a key path ("ice.servers[1].urls") inside
// n: that of its key, or of the list element; when the path does not
// exist, the line of the deepest part that does.
func nodeLine(n *yaml.Node, key string) int {
	line := 0
	for _, part := range strings.Split(key, ".") {
		name, idx, _ := strings.Cut(part, "[")
		if name != "" {
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == name {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		}
		for idx != "" { // "1]" or "1][2]"
			num, rest, _ := strings.Cut(idx, "]")
			i, err := strconv.Atoi(num)
			if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
			idx = strings.TrimPrefix(rest, "[")
		}
	}
	return line
}
