package registry

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/errdefs"
)

// The parity table of issue 17 item 4: the cases of containerd's hosts
// tests (core/remotes/docker/config/hosts_test.go), restated for Berth, so
// an operator's certs.d behaves the same under both. Where Berth differs
// on purpose the case says so.

const pullOnly = CapPull

// parityHost is what containerd's cases compare of a host.
type parityHost struct {
	url        string // scheme://host+path
	caps       Capabilities
	header     http.Header
	skipVerify string // "" when no TLS settings
	dial       time.Duration
	roots      bool // a CA file configured
	clients    int  // client certificates
}

func parityOf(h Host) parityHost {
	p := parityHost{url: h.URL(), caps: h.Capabilities, header: h.Header, dial: h.DialTimeout}
	if h.TLS != nil {
		p.skipVerify = fmt.Sprint(h.TLS.InsecureSkipVerify)
		p.roots = h.TLS.RootCAs != nil
		p.clients = len(h.TLS.Certificates)
	}
	return p
}

// TestParityDefaultHosts: with no configuration, docker.io is
// registry-1.docker.io over HTTPS with every capability.
func TestParityDefaultHosts(t *testing.T) {
	hc, err := LoadHosts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hs := hc.Hosts("docker.io")
	if len(hs) != 1 || hs[0].URL() != "https://registry-1.docker.io/v2" || hs[0].Capabilities != capAll || hs[0].Namespace != "" {
		t.Errorf("docker.io = %+v", hs)
	}
}

// TestParityParseHostFile is containerd's TestParseHostFile: one file
// holding every kind of [host] entry. Berth reads CA and client files at
// load (containerd at first use), so the paths here name real files.
func TestParityParseHostFile(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "test-default.registry")
	os.MkdirAll(filepath.Join(reg, "certs"), 0o755)
	for _, f := range []string{"default.pem", "mirror.pem", "test-1-ca.pem", "special.pem"} {
		writeCert(t, filepath.Join(reg, "certs", f), "")
	}
	writeCert(t, filepath.Join(reg, "certs", "client.cert"), filepath.Join(reg, "certs", "client.key"))
	for _, f := range []string{"client.pem", "client-1.pem", "client-2.pem"} {
		// one file holding certificate and key
		p := filepath.Join(reg, "certs", f)
		writeCert(t, p, p+".key")
		c, _ := os.ReadFile(p)
		k, _ := os.ReadFile(p + ".key")
		os.WriteFile(p, append(c, k...), 0o600)
	}
	writeHosts(t, dir, map[string]string{"test-default.registry": `
server = "https://test-default.registry"
ca = "certs/default.pem"
[header]
  x-custom-1 = "custom header"

[host."https://mirror.registry"]
  capabilities = ["pull"]
  ca = "certs/mirror.pem"
  skip_verify = false
  [host."https://mirror.registry".header]
    x-custom-2 = ["value1", "value2"]

[host."https://mirror-bak.registry/us"]
  capabilities = ["pull"]
  skip_verify = true

[host."http://mirror.registry"]
  capabilities = ["pull"]

[host."https://test-1.registry"]
  capabilities = ["pull", "resolve", "push", "referrers"]
  ca = ["certs/test-1-ca.pem", "certs/special.pem"]
  client = [["certs/client.cert", "certs/client.key"],["certs/client.pem", ""]]

[host."https://test-2.registry"]
  client = "certs/client.pem"

[host."https://test-3.registry"]
  client = ["certs/client-1.pem", "certs/client-2.pem"]

[host."https://no-referrers.registry"]
  capabilities = ["pull", "resolve", "push"]
  client = ["certs/client-1.pem", "certs/client-2.pem"]

[host."https://noncompliantmirror.registry/v2/namespaceprefix"]
  capabilities = ["pull"]
  override_path = true

[host."https://noprefixnoncompliant.registry"]
  override_path = true

[host."https://onlyheader.registry".header]
  x-custom-1 = "justaheader"

[host."https://dial-timeout.registry"]
  dial_timeout = "3s"
`})
	tb, fb := "true", "false"
	allWithReferrers := capAll | CapReferrers
	want := []parityHost{
		{url: "https://mirror.registry/v2", caps: pullOnly, roots: true, skipVerify: fb, header: http.Header{"X-Custom-2": {"value1", "value2"}}},
		{url: "https://mirror-bak.registry/us/v2", caps: pullOnly, skipVerify: tb},
		{url: "http://mirror.registry/v2", caps: pullOnly},
		{url: "https://test-1.registry/v2", caps: allWithReferrers, roots: true, skipVerify: fb, clients: 2},
		{url: "https://test-2.registry/v2", caps: capAll, skipVerify: fb, clients: 1},
		{url: "https://test-3.registry/v2", caps: capAll, skipVerify: fb, clients: 2},
		{url: "https://no-referrers.registry/v2", caps: capAll, skipVerify: fb, clients: 2},
		{url: "https://noncompliantmirror.registry/v2/namespaceprefix", caps: pullOnly},
		{url: "https://noprefixnoncompliant.registry", caps: capAll},
		{url: "https://onlyheader.registry/v2", caps: capAll, header: http.Header{"X-Custom-1": {"justaheader"}}},
		{url: "https://dial-timeout.registry/v2", caps: capAll, dial: 3 * time.Second},
		{url: "https://test-default.registry/v2", caps: capAll, roots: true, skipVerify: fb, header: http.Header{"X-Custom-1": {"custom header"}}},
	}
	hc, err := LoadHosts(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := hc.Hosts("test-default.registry")
	if len(got) != len(want) {
		t.Fatalf("%d hosts, want %d: %+v", len(got), len(want), got)
	}
	for i, h := range got {
		p := parityOf(h)
		// http.Header.Add canonicalises names; containerd keeps them as written.
		if fmt.Sprint(p) != fmt.Sprint(want[i]) {
			t.Errorf("host %d:\n got %+v\nwant %+v", i, p, want[i])
		}
		if mirror := i < len(got)-1; (h.Namespace == "test-default.registry") != mirror {
			t.Errorf("host %d (%s): namespace %q", i, h.URL(), h.Namespace)
		}
	}
}

// TestParityCertDir is containerd's TestLoadCertFiles: a registry
// directory without hosts.toml takes Docker's certificate files, *.crt as
// CAs and *.cert with the *.key of the same name as client certificates.
func TestParityCertDir(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ca, client bool
		clients    int
	}{
		{"crt only", true, false, 0},
		{"crt and cert pair", true, true, 1},
		{"cert pair only", false, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			reg := filepath.Join(dir, "testing.io")
			os.MkdirAll(reg, 0o755)
			if tc.ca {
				writeCert(t, filepath.Join(reg, "ca.crt"), "")
			}
			if tc.client {
				writeCert(t, filepath.Join(reg, "client.cert"), filepath.Join(reg, "client.key"))
			}
			hc, err := LoadHosts(dir)
			if err != nil {
				t.Fatal(err)
			}
			hs := hc.Hosts("testing.io")
			if len(hs) != 1 || hs[0].URL() != "https://testing.io/v2" || hs[0].TLS == nil {
				t.Fatalf("hosts = %+v, want the upstream with the directory's certificates", hs)
			}
			if p := parityOf(hs[0]); p.roots != tc.ca || p.clients != tc.clients {
				t.Errorf("roots %v, clients %d; want %v, %d", p.roots, p.clients, tc.ca, tc.clients)
			}
		})
	}
	t.Run("cert without its key", func(t *testing.T) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "testing.io"), 0o755)
		writeCert(t, filepath.Join(dir, "testing.io", "client.cert"), "")
		if _, err := LoadHosts(dir); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "client.key") {
			t.Errorf("LoadHosts = %v, want InvalidArgument naming the missing key", err)
		}
	})
}

// TestParityDefaultScheme restates containerd's TestHTTPFallback hosts.
// Deliberate difference: containerd tries HTTPS first for loopback
// registries and falls back to HTTP; Berth talks plain HTTP to loopback
// (the README's test registry is http://127.0.0.1:5000) and HTTPS to
// every other host, never falling back: a fallback would downgrade a
// registry whose TLS fails.
func TestParityDefaultScheme(t *testing.T) {
	for _, tc := range []struct{ host, scheme string }{
		{"localhost:8080", "http"}, {"localhost:80", "http"}, {"localhost:443", "http"}, {"localhost", "http"},
		{"localhost:5000", "http"}, {"127.0.0.254:5000", "http"}, {"127.0.0.254", "http"},
		{"[::1]:5000", "http"}, {"::1", "http"},
		{"example.com", "https"}, {"example.com:5000", "https"}, {"example2.com", "https"},
	} {
		if got := defaultUpstream(tc.host).Scheme; got != tc.scheme {
			t.Errorf("%s: scheme %s, want %s", tc.host, got, tc.scheme)
		}
	}
}

// nsRecorder records the query of every manifest and blob request.
type nsRecorder struct{ queries chan string }

func newNSRecorder() *nsRecorder { return &nsRecorder{queries: make(chan string, 100)} }

func (n *nsRecorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" {
			n.queries <- r.URL.RawQuery
		}
		h.ServeHTTP(w, r)
	})
}

// all drains what was recorded.
func (n *nsRecorder) all() []string {
	var out []string
	for {
		select {
		case q := <-n.queries:
			out = append(out, q)
		default:
			return out
		}
	}
}

// TestParityMirrorNamespace: requests to a mirror carry ?ns=<upstream>, as
// containerd sends them (pull-through caches serving several upstreams,
// e.g. Harbor's or distribution's proxies, route on it); requests to the
// server do not.
func TestParityMirrorNamespace(t *testing.T) {
	for _, tc := range []struct {
		name, dir, ref, ns string
	}{
		{"registry's own file", "docker.io", "test/img:v1", "docker.io"},
		{"_default", "_default", "ghcr.io/test/img:v1", "ghcr.io"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newNSRecorder()
			reg := startRegistry(t, rec.wrap)
			dir := t.TempDir()
			writeHosts(t, dir, map[string]string{tc.dir: fmt.Sprintf(`
server = "http://127.0.0.1:1"
[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, reg.host)})
			pullAll(t, newResolver(t, Options{ConfigPath: dir, Transport: newRecorder()}), mustParse(t, tc.ref), nil, reg.img)
			qs := rec.all()
			if len(qs) == 0 {
				t.Fatal("no request reached the mirror")
			}
			for _, q := range qs {
				if q != "ns="+tc.ns {
					t.Errorf("mirror request query %q, want ns=%s", q, tc.ns)
				}
			}
		})
	}
	t.Run("server", func(t *testing.T) {
		rec := newNSRecorder()
		reg := startRegistry(t, rec.wrap)
		dir := t.TempDir()
		writeHosts(t, dir, map[string]string{"example.com": `server = "http://` + reg.host + `"`})
		pullAll(t, newResolver(t, Options{ConfigPath: dir}), mustParse(t, "example.com/test/img:v1"), nil, reg.img)
		for _, q := range rec.all() {
			if q != "" {
				t.Errorf("server request query %q, want none", q)
			}
		}
	})
}
