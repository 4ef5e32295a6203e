package device

import (
	"errors"
	"net/url"
	"strings"
)

// RedactURL returns raw fit to be shown: the password of user:password@
// becomes "***" (the user stays, it helps to tell accounts apart) and so
// does the value of every query parameter whose name looks like a secret
// (token, key, password, auth, secret, signature, session, ...). A string
// that does not parse as a URL keeps only its scheme and path, so a typo
// in config.yaml cannot leak a password through an error text either.
//
// Every error text of this package shows URLs only in this form.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return redactUnparsable(raw)
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "***")
		}
	}
	u.RawQuery = redactQuery(u.RawQuery)
	u.Fragment, u.RawFragment = "", ""
	// url.URL escapes the *** of the password; show it plainly.
	return strings.Replace(u.String(), ":%2A%2A%2A@", ":***@", 1)
}

// redactQuery masks the values of secret-looking parameters and leaves
// the rest, in their order, untouched.
func redactQuery(q string) string {
	if q == "" {
		return ""
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if ok && secretName(k) {
			parts[i] = k + "=***"
		}
	}
	return strings.Join(parts, "&")
}

// secretName reports whether a query parameter named k likely carries a
// credential. It errs on the side of hiding.
func secretName(k string) bool {
	if uk, err := url.QueryUnescape(k); err == nil {
		k = uk
	}
	k = strings.ToLower(k)
	if k == "pw" || k == "psw" {
		return true
	}
	// "pas": cheap cameras' loginpas.
	for _, s := range []string{"token", "key", "pas", "pwd", "secret", "auth", "sig", "session", "cred"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// redactUnparsable handles a URL that url.Parse refused: everything from
// "://" to the last "@" before the query (a password may hold a "/"), and
// the whole query, are masked.
func redactUnparsable(raw string) string {
	s := raw
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + "?***"
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	beforeQuery, _, _ := strings.Cut(rest, "?")
	if i := strings.LastIndex(beforeQuery, "@"); i >= 0 {
		rest = "***" + rest[i:]
	}
	return scheme + "://" + rest
}

// redactErr returns err with the URL of a net/http *url.Error redacted.
// net/http already masks a URL's password there, but not query tokens.
// What the error wraps is kept, so errors.Is and errors.As still see the
// cause.
func redactErr(err error) error {
	var ue *url.Error
	if err == nil || !errors.As(err, &ue) {
		return err
	}
	if ue == err {
		return &url.Error{Op: ue.Op, URL: RedactURL(ue.URL), Err: ue.Err}
	}
	// A url.Error deeper in the chain: its text is already part of err's,
	// which is rebuilt with the URL replaced.
	return &redactedError{text: strings.ReplaceAll(err.Error(), ue.URL, RedactURL(ue.URL)), err: err}
}

// redactedError shows a redacted text for an error and unwraps to it.
type redactedError struct {
	text string
	err  error
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }
