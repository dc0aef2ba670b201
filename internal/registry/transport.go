package registry

import (
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"time"
)

// newDefaultTransport is the base transport when Options.Transport is nil:
// bounded waits at every step before the body, no bound on the body itself
// (layers are large; the caller's context ends a stuck download).
func newDefaultTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          100,
		// Layers of one image download in parallel from one host.
		MaxIdleConnsPerHost: 16,
		ForceAttemptHTTP2:   true,
	}
}

// hostTransportKey identifies the settings that need a transport of their
// own; hosts sharing a parsed TLS config share the transport.
type hostTransportKey struct {
	tls  *tls.Config
	dial time.Duration
}

// transportFor returns base, or a clone of it with h's TLS and dial settings
// when base is an *http.Transport (a test's custom RoundTripper is used as
// is).
func transportFor(base http.RoundTripper, h Host) http.RoundTripper {
	if h.TLS == nil && h.DialTimeout == 0 {
		return base
	}
	t, ok := base.(*http.Transport)
	if !ok {
		return base
	}
	t = t.Clone()
	if h.TLS != nil {
		t.TLSClientConfig = h.TLS.Clone()
	}
	if h.DialTimeout > 0 {
		t.DialContext = (&net.Dialer{Timeout: h.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	return t
}

// hostRewriter makes go-containerregistry's transport, which only knows
// https://<registry>/v2/, talk to a host as hosts.toml describes it: it
// forces the host's scheme (so the https-then-http ping never leaves the
// configured scheme), maps the ping path /v2/ to the host's API root
// (override_path mirrors), adds the configured headers, and names the
// upstream registry (?ns=) on a mirror's requests.
type hostRewriter struct {
	host  Host
	inner http.RoundTripper
}

func (t *hostRewriter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != t.host.Host {
		// A token server or a blob redirect target: not ours to change.
		return t.inner.RoundTrip(req)
	}
	out := req.Clone(req.Context())
	out.URL.Scheme = t.host.Scheme
	if out.URL.Path == "/v2/" && t.host.Path != "/v2" {
		out.URL.Path = strings.TrimSuffix(t.host.Path, "/") + "/"
		out.URL.RawPath = ""
	}
	if t.host.Namespace != "" && req.URL.Path != "/v2/" {
		q := out.URL.Query()
		q.Set("ns", t.host.Namespace)
		out.URL.RawQuery = q.Encode()
	}
	for k, vs := range t.host.Header {
		if out.Header.Get(k) == "" {
			out.Header[k] = append([]string(nil), vs...)
		}
	}
	return t.inner.RoundTrip(out)
}
