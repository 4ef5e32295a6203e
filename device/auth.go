package device

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"
	"sync"
)

// auth signs a source's requests: a bearer token (camd's firmware), or the
// user and password in the URL, as HTTP Basic until the device asks for
// Digest (RFC 7616; Hikvision, Dahua, Amcrest and Axis cameras default to
// it), then as Digest from the challenge it sent, so that polling a still
// costs one request per frame, not two.
type auth struct {
	token      string
	user, pass string
	hasUser    bool

	mu     sync.Mutex
	digest *digestChallenge // the device's last challenge; nil until one
	nc     uint32           // requests signed with its nonce
}

func newAuth(req *http.Request, token string) *auth {
	a := &auth{token: token}
	if u := req.URL.User; u != nil {
		a.user, a.hasUser = u.Username(), true
		a.pass, _ = u.Password()
	}
	return a
}

// do sends req signed, and once more if the device answers 401 with a
// Digest challenge (a new one, or a stale nonce). The URL's userinfo is
// sent as an Authorization header, which net/http keeps on a redirect to
// the same host (it drops userinfo on an absolute one).
func (a *auth) do(client *http.Client, req *http.Request) (*http.Response, error) {
	req.URL.User = nil
	a.sign(req)
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !a.hasUser || a.token != "" {
		return resp, err
	}
	c, ok := parseDigest(resp.Header.Values("WWW-Authenticate"))
	if !ok {
		return resp, nil
	}
	a.mu.Lock()
	retry := a.digest == nil || c.stale || c.nonce != a.digest.nonce
	if retry {
		a.digest, a.nc = c, 0
	}
	a.mu.Unlock()
	if !retry { // the device refused this very challenge's answer: a wrong password
		return resp, nil
	}
	// Drain a short error body so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	again := req.Clone(req.Context())
	a.sign(again)
	return client.Do(again)
}

// sign sets req's Authorization header.
func (a *auth) sign(req *http.Request) {
	switch {
	case a.token != "":
		req.Header.Set("Authorization", "Bearer "+a.token)
	case !a.hasUser:
	default:
		a.mu.Lock()
		c := a.digest
		a.nc++
		nc := a.nc
		a.mu.Unlock()
		if c == nil {
			req.SetBasicAuth(a.user, a.pass)
			return
		}
		var cb [12]byte
		rand.Read(cb[:])
		req.Header.Set("Authorization", c.answer(a.user, a.pass, req.Method, req.URL.RequestURI(), nc, hex.EncodeToString(cb[:])))
	}
}

// digestChallenge is what a WWW-Authenticate: Digest header asks for.
type digestChallenge struct {
	realm, nonce, opaque, algorithm string
	qopAuth                         bool // qop="auth" offered (else the RFC 2069 form)
	stale                           bool
}

// parseDigest returns the first Digest challenge among headers, with an
// algorithm this client speaks (MD5, SHA-256, and their -sess forms).
func parseDigest(headers []string) (*digestChallenge, bool) {
	for _, h := range headers {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
		if !strings.EqualFold(scheme, "Digest") {
			continue
		}
		p := authParams(rest)
		c := &digestChallenge{realm: p["realm"], nonce: p["nonce"], opaque: p["opaque"], algorithm: p["algorithm"],
			stale: strings.EqualFold(p["stale"], "true")}
		for _, q := range strings.Split(p["qop"], ",") {
			if strings.EqualFold(strings.TrimSpace(q), "auth") {
				c.qopAuth = true
			}
		}
		if c.nonce == "" || c.newHash() == nil {
			continue
		}
		return c, true
	}
	return nil, false
}

// authParams splits `a="x, y", b=z` into its parameters.
func authParams(s string) map[string]string {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(strings.TrimLeft(k, ", ")))
		rest = strings.TrimSpace(rest)
		var v string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
				}
				b.WriteByte(rest[i])
			}
			v, s = b.String(), rest[min(i+1, len(rest)):]
		} else {
			v, s, _ = strings.Cut(rest, ",")
			v = strings.TrimSpace(v)
		}
		out[k] = v
		s = strings.TrimLeft(s, ", ")
	}
	return out
}

func (c *digestChallenge) newHash() hash.Hash {
	switch strings.ToUpper(strings.TrimSuffix(strings.ToLower(c.algorithm), "-sess")) {
	case "", "MD5":
		return md5.New()
	case "SHA-256":
		return sha256.New()
	}
	return nil
}

func (c *digestChallenge) h(parts ...string) string {
	h := c.newHash()
	io.WriteString(h, strings.Join(parts, ":"))
	return hex.EncodeToString(h.Sum(nil))
}

// answer returns the Authorization header for one request.
func (c *digestChallenge) answer(user, pass, method, uri string, nc uint32, cnonce string) string {
	ha1 := c.h(user, c.realm, pass)
	if strings.HasSuffix(strings.ToLower(c.algorithm), "-sess") {
		ha1 = c.h(ha1, c.nonce, cnonce)
	}
	ha2 := c.h(method, uri)
	ncs := fmt.Sprintf("%08x", nc)
	var b strings.Builder
	fmt.Fprintf(&b, `Digest username=%q, realm=%q, nonce=%q, uri=%q`, user, c.realm, c.nonce, uri)
	if c.qopAuth {
		fmt.Fprintf(&b, `, qop=auth, nc=%s, cnonce=%q, response=%q`, ncs, cnonce, c.h(ha1, c.nonce, ncs, cnonce, "auth", ha2))
	} else {
		fmt.Fprintf(&b, `, response=%q`, c.h(ha1, c.nonce, ha2))
	}
	if c.algorithm != "" {
		fmt.Fprintf(&b, `, algorithm=%s`, c.algorithm)
	}
	if c.opaque != "" {
		fmt.Fprintf(&b, `, opaque=%q`, c.opaque)
	}
	return b.String()
}
