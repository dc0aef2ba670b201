package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berth-cri/berth/internal/errdefs"
)

var (
	// ErrRegistryUnavailable: no host of the registry could be reached
	// (connection refused, DNS, timeout, 5xx, 429). Its text starts
	// "RegistryUnavailable", and so does every error wrapping it that this
	// package returns: kubelet shows that reason only for messages with this
	// prefix (and gRPC code Unknown, which errdefs.Code gives it), so the
	// image service must return such an error without prepending anything.
	ErrRegistryUnavailable = errors.New("RegistryUnavailable")
	// ErrDigestMismatch: a registry sent content that does not match the
	// digest (or size) it was asked for.
	ErrDigestMismatch = errors.New("digest mismatch")
)

// hostError is why one host failed; kind is one of the sentinels above or
// errdefs.ErrNotFound / ErrUnauthenticated / ErrResourceExhausted /
// ErrUnimplemented, or nil for anything else. Its text never holds
// credentials: it is built from status codes and network errors only.
type hostError struct {
	host   string // Host.URL()
	kind   error
	reason string
}

func (e *hostError) Error() string { return e.host + ": " + e.reason }

// classify turns an error from one request to host into a hostError.
func classify(host string, err error) *hostError {
	var he *hostError
	if errors.As(err, &he) {
		return he
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return statusError(host, te.StatusCode, diagnostics(te))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// url.Error's text repeats the URL; keep the cause only.
		return &hostError{host: host, kind: ErrRegistryUnavailable, reason: ue.Err.Error()}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return &hostError{host: host, kind: ErrRegistryUnavailable, reason: ne.Error()}
	}
	var dnse *net.DNSError
	var ope *net.OpError
	if errors.As(err, &dnse) || errors.As(err, &ope) {
		return &hostError{host: host, kind: ErrRegistryUnavailable, reason: err.Error()}
	}
	return &hostError{host: host, reason: err.Error()}
}

// statusError classifies an HTTP status from host.
func statusError(host string, code int, detail string) *hostError {
	reason := fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	if detail != "" {
		reason += " (" + detail + ")"
	}
	e := &hostError{host: host, reason: reason}
	switch {
	case code == http.StatusNotFound:
		e.kind = errdefs.ErrNotFound
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		e.kind = errdefs.ErrUnauthenticated
	case code == http.StatusTooManyRequests || code >= 500:
		e.kind = ErrRegistryUnavailable
	}
	return e
}

// knownCodes are the error codes of the distribution spec (plus the two
// Docker Hub and go-containerregistry use for 5xx).
var knownCodes = map[string]bool{
	"BLOB_UNKNOWN": true, "BLOB_UPLOAD_INVALID": true, "BLOB_UPLOAD_UNKNOWN": true,
	"DIGEST_INVALID": true, "MANIFEST_BLOB_UNKNOWN": true, "MANIFEST_INVALID": true,
	"MANIFEST_UNKNOWN": true, "MANIFEST_UNVERIFIED": true, "NAME_INVALID": true,
	"NAME_UNKNOWN": true, "SIZE_INVALID": true, "TAG_INVALID": true, "UNAUTHORIZED": true,
	"DENIED": true, "UNSUPPORTED": true, "TOOMANYREQUESTS": true, "UNKNOWN": true,
	"UNAVAILABLE": true,
}

// diagnostics lists the registry's error codes (MANIFEST_UNKNOWN…), not its
// messages, which are free text from a server we do not trust. A code is
// free text too: only the spec's are repeated (a hostile registry could put
// the password it was sent in one).
func diagnostics(te *transport.Error) string {
	var codes []string
	for _, d := range te.Errors {
		switch c := string(d.Code); {
		case knownCodes[c]:
			codes = append(codes, c)
		case c != "":
			codes = append(codes, "unknown error code")
		}
	}
	return strings.Join(codes, ", ")
}

// scrub replaces every secret of creds found in reason by "<redacted>".
// Reasons are built without credentials, but some carry text from the
// registry (a token server's unexpected answer, a challenge's parameters),
// and a hostile registry may echo what it was sent.
func scrub(reason string, creds []*Auth) string {
	for _, c := range creds {
		for _, s := range c.secrets() {
			reason = strings.ReplaceAll(reason, s, redacted)
		}
	}
	return reason
}

// kindRank orders failure kinds by how much they tell the user: a registry
// that answered "unauthorized" explains more than one that was unreachable.
var kindRank = []error{ErrDigestMismatch, errdefs.ErrUnauthenticated, errdefs.ErrResourceExhausted, errdefs.ErrUnimplemented, errdefs.ErrNotFound, ErrRegistryUnavailable, errdefs.ErrInvalidArgument}

// combine builds the error returned when every host failed for what (e.g.
// "pull docker.io/library/busybox:latest"): it wraps the most telling kind
// and names every host tried with its reason.
func combine(what string, errs []*hostError) error {
	if len(errs) == 0 {
		return fmt.Errorf("%s: no registry host with the needed capability is configured: %w", what, errdefs.ErrNotFound)
	}
	reasons := make([]string, len(errs))
	for i, e := range errs {
		reasons[i] = e.Error()
	}
	detail := strings.Join(reasons, "; ")
	for _, k := range kindRank {
		for _, e := range errs {
			if e.kind != k {
				continue
			}
			if k == ErrRegistryUnavailable {
				// The prefix kubelet looks for comes first.
				return fmt.Errorf("%w: %s: %s", k, what, detail)
			}
			return fmt.Errorf("%s: %w: %s", what, k, detail)
		}
	}
	return fmt.Errorf("%s: %s", what, detail)
}

// ctxErr wraps a cancelled or expired caller context: that is the caller
// giving up, not the registry failing, and must map to Canceled or
// DeadlineExceeded rather than RegistryUnavailable.
func ctxErr(ctx context.Context, what, host string) error {
	return fmt.Errorf("%s from %s: %w", what, host, ctx.Err())
}
