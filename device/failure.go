package device

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
)

// DropReason says why a frame was dropped. Its String is a short
// snake_case word, fit as a Prometheus label value.
type DropReason uint8

// Drop reasons.
const (
	DropEmpty     DropReason = iota // zero bytes
	DropNotJPEG                     // no JPEG start marker
	DropTruncated                   // no end marker, or the connection broke mid-frame
	DropCorrupt                     // broken JPEG segments, or a broken MJPEG stream
	DropTooLarge                    // over the size limit
	numDropReasons
)

func (r DropReason) String() string {
	switch r {
	case DropEmpty:
		return "empty"
	case DropNotJPEG:
		return "not_jpeg"
	case DropTruncated:
		return "truncated"
	case DropCorrupt:
		return "corrupt"
	case DropTooLarge:
		return "too_large"
	}
	return "DropReason(" + strconv.Itoa(int(r)) + ")"
}

// DropCounts counts dropped frames by reason, indexed by DropReason. It
// marshals to a JSON object with every reason's name as a key.
type DropCounts [numDropReasons]uint64

// Total is the number of dropped frames, all reasons together.
func (d DropCounts) Total() uint64 {
	var n uint64
	for _, c := range d {
		n += c
	}
	return n
}

// MarshalJSON writes {"empty":0,"not_jpeg":0,...}, reasons in a fixed order.
func (d DropCounts) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for r, n := range d {
		if r > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, DropReason(r).String())
		b = append(b, ':')
		b = strconv.AppendUint(b, n, 10)
	}
	return append(b, '}'), nil
}

// String lists the non-zero counts: "3 corrupt, 1 truncated".
func (d DropCounts) String() string {
	var parts []string
	for r, n := range d {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, DropReason(r)))
		}
	}
	if parts == nil {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// logAttrs returns the non-zero counts as slog key-value pairs.
func (d DropCounts) logAttrs() []any {
	var kv []any
	for r, n := range d {
		if n > 0 {
			kv = append(kv, DropReason(r).String(), n)
		}
	}
	return kv
}

// dropReason classifies an error of CheckJPEG or of a source's frame
// parsing.
func dropReason(err error) DropReason {
	switch {
	case errors.Is(err, ErrEmptyFrame):
		return DropEmpty
	case errors.Is(err, ErrNotJPEG):
		return DropNotJPEG
	case errors.Is(err, ErrFrameTooLarge):
		return DropTooLarge
	case errors.Is(err, ErrTruncatedJPEG), errors.Is(err, io.ErrUnexpectedEOF):
		return DropTruncated
	}
	return DropCorrupt
}

// badFrame reports whether the error that ended a stream was a bad frame
// from the device (counted as dropped): an oversized part, a broken MJPEG
// stream. A connection cut mid-frame is not: the device did not send a
// bad frame, it went away.
func badFrame(err error) bool {
	return errors.Is(err, ErrFrameTooLarge) || (errors.Is(err, ErrBadMultipart) && !connLost(err))
}

// failure is what Camera makes of the error that ended a source's Stream.
type failure struct {
	// unreachable: the device could not be reached, or the connection to
	// it broke after it had been delivering. Camera probes for its return
	// rather than backing off. Otherwise the device answered but failed
	// (an HTTP error, no stream, only bad frames) and Camera backs off, so
	// a misconfigured camera is not hammered.
	unreachable bool
	reason      string // in plain words, without secrets
}

// classify turns the error that ended a Stream into a failure. gotFrames
// says whether the stream delivered good frames before it failed.
func classify(err error, gotFrames bool) failure {
	if err == nil {
		err = answered(fmt.Errorf("stream ended: %w", io.EOF))
	}
	var ae *answeredError
	after := errors.As(err, &ae)
	unreachable := connLost(err) && (!after || gotFrames)
	return failure{unreachable: unreachable, reason: plainWords(err, after)}
}

// connLost reports whether err means the device or the network went
// away: refused, reset, timed out, closed, unresolvable, silent.
func connLost(err error) bool {
	var oe *net.OpError
	var de *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(err, errStalled), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.EHOSTDOWN), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ENETDOWN),
		errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &de):
		return true
	case errors.As(err, &oe) && oe.Op == "dial":
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return false
}

// plainWords says what err means for someone looking at the camera, not
// at the code. after says whether the device had answered the request.
func plainWords(err error, after bool) string {
	addr := "the device"
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Addr != nil {
		addr = oe.Addr.String()
	}
	var se *StatusError
	var de *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		switch se.Code {
		case 401, 403:
			return "the device refused access (HTTP " + se.Status + "): check the user and password in url, or the camera's token"
		case 404:
			return "the device has no such page (HTTP " + se.Status + "): check url, stream_url and mode"
		case 503:
			return "the device is busy (HTTP " + se.Status + "): another viewer may be connected to it"
		}
		return "the device answered with an error (HTTP " + se.Status + ")"
	case errors.Is(err, errInvalidURL):
		return "the camera's url is invalid"
	case errors.Is(err, errStalled):
		return "the device stopped sending frames"
	case errors.Is(err, errNotMJPEG):
		return "the device answered, but not with an MJPEG stream: check url, stream_url and mode"
	case errors.Is(err, ErrFrameTooLarge):
		return "the device sent a frame over the size limit"
	case errors.As(err, &de):
		return "the device's name " + de.Name + " cannot be resolved"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing accepts connections at " + addr + ": the device is off or restarting"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EHOSTDOWN):
		return "no route to " + addr + ": the device is off or out of reach"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ENETDOWN):
		return "the network to " + addr + " is down"
	case errors.As(err, &oe) && oe.Op == "dial" && oe.Timeout():
		return addr + " does not answer: the device is off or out of reach"
	case errors.Is(err, ErrBadMultipart) && !errors.Is(err, io.ErrUnexpectedEOF):
		return "the device sent a broken MJPEG stream"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		if after {
			return "the connection to the device broke"
		}
		return "the device closed the connection without answering"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "the device did not answer in time"
	case errors.As(err, new(*tls.CertificateVerificationError)):
		return "the device's HTTPS certificate is not trusted (self-signed?): set verify_tls: false on the camera's source to accept it"
	}
	return err.Error()
}
