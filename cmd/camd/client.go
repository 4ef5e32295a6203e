package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/camd/camd/internal/config"
	"github.com/camd/camd/internal/daemon"
	"github.com/camd/camd/internal/pin"
	"github.com/camd/camd/sdk"
)

// client talks to a running camd's API as a config file describes it: at
// its http.listen (a wildcard host means this machine), over HTTPS when
// it has tls, trusting only the certificate it names (or one valid for
// the address), with an admin token when one is at hand. camd reload and
// camd validate need it because camd re-reads only the file it was
// started with, and only camd can say which file that is.
type client struct {
	base  string       // http://127.0.0.1:8080 or https://…
	file  string       // the config file it was made from, for messages
	http  *http.Client // checks camd's certificate: see pinnedCert
	token string       // an admin token, or "": never printed
	from  string       // where token came from, for messages
}

// askTimeout bounds one question to camd (not a reload, which starts
// plugins): generous, as a busy machine answers slowly.
const askTimeout = 30 * time.Second

// newClient makes a client for the camd that cfg describes, with the
// admin token from tokenFile, $CAMD_TOKEN or cfg (see adminToken).
func newClient(cfg *config.Config, tokenFile string) (*client, error) {
	host, port, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("%s: http.listen: %v", cfg.Path, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening everywhere includes here
	}
	c := &client{base: "http://" + net.JoinHostPort(host, port), file: cfg.Path}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // camd is on this machine: no proxy sees the token
	if cert := cfg.Security(-1).TLSCert; cert != "" {
		verify, err := pinnedCert(cert, host)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         host,
			InsecureSkipVerify: true, // VerifyConnection checks instead: see pinnedCert
			VerifyConnection:   verify,
		}
		c.base = "https://" + net.JoinHostPort(host, port)
	}
	c.http = &http.Client{Transport: tr}
	c.token, c.from, err = adminToken(cfg, tokenFile)
	return c, err
}

// adminToken finds a credential for camd's API: the token in tokenFile,
// else $CAMD_TOKEN, else an admin token of cfg (after ${VAR} expansion and
// token_file); users' passwords are only hashes, so they cannot serve.
// from says where it came from, without the token.
func adminToken(cfg *config.Config, tokenFile string) (token, from string, err error) {
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return "", "", fmt.Errorf("-token-file: %w", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, "the token in " + tokenFile, nil
		}
		return "", "", fmt.Errorf("-token-file: %s is empty", tokenFile)
	}
	if t := strings.TrimSpace(os.Getenv("CAMD_TOKEN")); t != "" {
		return t, "the token in $CAMD_TOKEN", nil
	}
	if cfg.Auth != nil {
		for _, t := range cfg.Auth.Tokens {
			if t.Scope == sdk.ScopeAdmin && t.Token != "" {
				return t.Token, fmt.Sprintf("admin token %q of %s", t.Name, cfg.Path), nil
			}
		}
	}
	return "", "", nil
}

// pinnedCert returns a check of the certificate camd presents: it must be
// one of those in file (the config's tls.cert, which camd serves), or
// else verify for host (see pin.Verify), so the token goes to no other
// server.
func pinnedCert(file, host string) (func(tls.ConnectionState) error, error) {
	certs, err := pin.Load(file)
	if err != nil {
		return nil, fmt.Errorf("camd's certificate (tls.cert): %w", err)
	}
	return func(cs tls.ConnectionState) error {
		if err := pin.Verify(cs, host, certs); err != nil {
			return &certError{fmt.Errorf("its certificate is not the one in %s (tls.cert), nor valid for %s: %w", file, host, err)}
		}
		return nil
	}, nil
}

// certError is a server failing pinnedCert's check, told apart so that
// the message says it is not camd rather than that camd is down.
type certError struct{ err error }

func (e *certError) Error() string { return e.err.Error() }
func (e *certError) Unwrap() error { return e.err }

// notCamd is an error saying that what answers at the config's address
// is not camd, or nothing does. Nothing secret was sent to it.
type notCamd struct{ error }

// call sends one request to camd's API, with the token when withToken,
// and returns the answer with its body read (at most 4 MiB).
func (c *client) call(ctx context.Context, method, path string, withToken bool) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, nil, err
	}
	if withToken && c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without "Get URL:", which messages say their own way
		}
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp, body, err
}

// healthz checks, without credentials, that camd answers at the config's
// address, before any token is sent there: another program may have
// taken the port.
func (c *client) healthz(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	resp, body, err := c.call(ctx, http.MethodGet, "/healthz", false)
	var ce *certError
	switch {
	case errors.As(err, &ce):
		return notCamd{fmt.Errorf("%s is not the camd of %s, so nothing was sent to it: %v", c.base, c.file, ce)}
	case err != nil:
		return notCamd{fmt.Errorf("no camd answers at %s (is camd running?): %v", c.base, err)}
	case resp.StatusCode != http.StatusOK || string(body) != "ok\n":
		return notCamd{fmt.Errorf("what answers at %s is not camd (its /healthz: %s)", c.base, resp.Status)}
	}
	return nil
}

// camdStatus is what camd reload and validate read of camd's /api/status
// (daemon.Status): which file camd runs and where it listens. Only these
// fields, so that nothing else there can make the answer unreadable.
type camdStatus struct {
	Config  string `json:"config"` // absolute, as camd sees it
	PID     int    `json:"pid"`
	Outputs []struct {
		Name   string   `json:"name"`
		Listen []string `json:"listen"`
	} `json:"outputs"`
}

// status asks camd for its /api/status. Call healthz first.
func (c *client) status(ctx context.Context) (*camdStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	resp, body, err := c.call(ctx, http.MethodGet, "/api/status", true)
	if err != nil {
		return nil, fmt.Errorf("asking the camd at %s: %v", c.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, c.refusal(resp, body)
	}
	var st camdStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("%s/api/status: not camd's answer: %v", c.base, err)
	}
	return &st, nil
}

// reload asks camd to re-read its config file, and returns what camd
// says: ok with what changed, or the errors for which it kept the old
// config. ctx must allow for camd starting every plugin to check it.
func (c *client) reload(ctx context.Context) (*daemon.ReloadStatus, error) {
	resp, body, err := c.call(ctx, http.MethodPost, "/api/reload", true)
	if err != nil {
		return nil, fmt.Errorf("asking the camd at %s to reload: %v", c.base, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnprocessableEntity {
		return nil, c.refusal(resp, body)
	}
	var st daemon.ReloadStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("%s/api/reload: %s, and not camd's answer: %v", c.base, resp.Status, err)
	}
	return &st, nil
}

// refusal says why camd did not answer a request, in terms of what to do
// about it, from its answer.
func (c *client) refusal(resp *http.Response, body []byte) error {
	said, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	switch {
	case resp.StatusCode == http.StatusUnauthorized && c.token == "":
		return fmt.Errorf("%s wants an admin credential (%s): set CAMD_TOKEN to an admin token, or pass -token-file FILE", c.base, resp.Status)
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%s refused %s (%s): is it one of camd's admin tokens?", c.base, c.from, resp.Status)
	case resp.StatusCode == http.StatusForbidden && c.token != "":
		return fmt.Errorf("%s refused %s (%s): %s", c.base, c.from, resp.Status, said)
	case resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%s refused it (%s): too many failed logins from this machine of late; wait a minute and try again", c.base, resp.Status)
	}
	return fmt.Errorf("%s: %s: %s", c.base, resp.Status, said)
}

// runs reports whether camd, by its status, runs the config file path. It
// compares the files, not their names (os.SameFile), so another name
// for the same file, a symlink, counts as the same.
func runs(st *camdStatus, path string) (bool, error) {
	if st.Config == "" {
		return false, errors.New("it does not say which file it runs (a camd older than this command?)")
	}
	theirs, err := os.Stat(st.Config)
	if err != nil {
		return false, err
	}
	ours, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(theirs, ours), nil
}

// holds reports whether the camd of st, found answering at api, listens
// on addr: as its API, or for one of its outputs.
func holds(st *camdStatus, api, addr string) bool {
	if daemon.Conflicts(addr, api) {
		return true
	}
	for _, o := range st.Outputs {
		for _, l := range o.Listen {
			if daemon.Conflicts(addr, l) {
				return true
			}
		}
	}
	return false
}
