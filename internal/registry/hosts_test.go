package registry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/errdefs"
)

// writeCert writes a self-signed certificate (and its key, to keyPath when
// set) as PEM; test-only material, made fresh for each run.
func writeCert(t *testing.T, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if keyPath != "" {
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// writeHosts creates dir/<reg>/hosts.toml for each entry.
func writeHosts(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for reg, content := range files {
		if err := os.MkdirAll(filepath.Join(dir, reg), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, reg, "hosts.toml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// hostSummary is the comparable part of a Host.
type hostSummary struct {
	URL  string
	Caps Capabilities
}

func summarize(hs []Host) []hostSummary {
	out := make([]hostSummary, len(hs))
	for i, h := range hs {
		out[i] = hostSummary{h.URL(), h.Capabilities}
	}
	return out
}

func TestHosts(t *testing.T) {
	const pr = CapPull | CapResolve
	tests := []struct {
		name     string
		files    map[string]string
		registry string
		want     []hostSummary
	}{
		{
			name: "no config: docker.io upstream", registry: "docker.io",
			want: []hostSummary{{"https://registry-1.docker.io/v2", capAll}},
		},
		{
			name: "no config: other registry over https", registry: "quay.io",
			want: []hostSummary{{"https://quay.io/v2", capAll}},
		},
		{
			name: "no config: loopback is plain http", registry: "127.0.0.1:5000",
			want: []hostSummary{{"http://127.0.0.1:5000/v2", capAll}},
		},
		{
			name: "no config: localhost and ::1 too", registry: "[::1]:5000",
			want: []hostSummary{{"http://[::1]:5000/v2", capAll}},
		},
		{
			name:     "mirror-only: server replaces upstream",
			registry: "registry.k8s.io",
			files: map[string]string{"registry.k8s.io": `
server = "http://127.0.0.1:5000"
[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
`},
			want: []hostSummary{{"http://127.0.0.1:5000/v2", pr}, {"http://127.0.0.1:5000/v2", capAll}},
		},
		{
			name:     "mirrors in file order, then default upstream",
			registry: "docker.io",
			files: map[string]string{"docker.io": `
[host."https://zz.example.com"]
  capabilities = ["pull"]
[host."https://aa.example.com:8443/prefix"]
[host."mirror.example.com"]
  capabilities = ["pull", "resolve", "push"]
`},
			want: []hostSummary{
				{"https://zz.example.com/v2", CapPull},
				{"https://aa.example.com:8443/prefix/v2", capAll},
				{"https://mirror.example.com/v2", capAll},
				{"https://registry-1.docker.io/v2", capAll},
			},
		},
		{
			name:     "override_path and an explicit /v2",
			registry: "gcr.io",
			files: map[string]string{"gcr.io": `
server = "https://gcr.io"
capabilities = ["pull"]
[host."https://art.example.com/api/docker/gcr/v2"]
  override_path = true
[host."https://other.example.com/v2"]
`},
			want: []hostSummary{
				{"https://art.example.com/api/docker/gcr/v2", capAll},
				{"https://other.example.com/v2", capAll},
				{"https://gcr.io/v2", CapPull},
			},
		},
		{
			name:     "_default applies to unconfigured registries, with their upstream",
			registry: "quay.io",
			files: map[string]string{"_default": `
[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
`, "docker.io": `server = "http://127.0.0.1:6000"`},
			want: []hostSummary{{"http://127.0.0.1:5000/v2", pr}, {"https://quay.io/v2", capAll}},
		},
		{
			name:     "a registry's own file wins over _default",
			registry: "docker.io",
			files: map[string]string{"_default": `
[host."http://127.0.0.1:5000"]
`, "docker.io": `server = "http://127.0.0.1:6000"`},
			want: []hostSummary{{"http://127.0.0.1:6000/v2", capAll}},
		},
		{
			name:     "host dir with a port",
			registry: "127.0.0.1:5000",
			files:    map[string]string{"127.0.0.1:5000": `server = "https://127.0.0.1:5000"`},
			want:     []hostSummary{{"https://127.0.0.1:5000/v2", capAll}},
		},
		{
			name:     "server docker.io means the registry endpoint",
			registry: "docker.io",
			files:    map[string]string{"docker.io": `server = "https://docker.io"`},
			want:     []hostSummary{{"https://registry-1.docker.io/v2", capAll}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeHosts(t, dir, tt.files)
			c, err := LoadHosts(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := summarize(c.Hosts(tt.registry)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Hosts(%s) =\n %v\nwant\n %v", tt.registry, got, tt.want)
			}
		})
	}
}

func TestHostsMissingDir(t *testing.T) {
	for _, dir := range []string{"", filepath.Join(t.TempDir(), "absent")} {
		c, err := LoadHosts(dir)
		if err != nil {
			t.Fatalf("LoadHosts(%q): %v", dir, err)
		}
		if got := summarize(c.Hosts("docker.io")); len(got) != 1 || got[0].URL != "https://registry-1.docker.io/v2" {
			t.Errorf("LoadHosts(%q).Hosts = %v", dir, got)
		}
	}
}

func TestHostsTLSAndHeaders(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "secure.example.com")
	if err := os.MkdirAll(reg, 0o755); err != nil {
		t.Fatal(err)
	}
	writeCert(t, filepath.Join(reg, "ca1.crt"), "")
	abs := filepath.Join(dir, "ca2.crt")
	writeCert(t, abs, "")
	writeCert(t, filepath.Join(reg, "client.crt"), filepath.Join(reg, "client.key"))
	writeCert(t, filepath.Join(reg, "both.pem"), filepath.Join(reg, "both.key"))
	// One PEM file holding certificate and key.
	c, _ := os.ReadFile(filepath.Join(reg, "both.pem"))
	k, _ := os.ReadFile(filepath.Join(reg, "both.key"))
	if err := os.WriteFile(filepath.Join(reg, "both.pem"), append(c, k...), 0o600); err != nil {
		t.Fatal(err)
	}
	writeHosts(t, dir, map[string]string{"secure.example.com": `
server = "https://secure.example.com"
ca = "ca1.crt"
[host."https://m1.example.com"]
  ca = ["ca1.crt", "` + abs + `"]
  client = [["client.crt", "client.key"], "both.pem"]
  header = { X-Single = "a", X-Multi = ["b", "c"] }
  dial_timeout = "2s"
[host."https://m2.example.com"]
  skip_verify = true
[host."http://m3.example.com"]
`})
	cfg, err := LoadHosts(dir)
	if err != nil {
		t.Fatal(err)
	}
	hs := cfg.Hosts("secure.example.com")
	if len(hs) != 4 {
		t.Fatalf("got %d hosts", len(hs))
	}
	m1, m2, m3, server := hs[0], hs[1], hs[2], hs[3]
	if m1.TLS == nil || m1.TLS.RootCAs == nil || len(m1.TLS.Certificates) != 2 {
		t.Errorf("m1 TLS = %+v", m1.TLS)
	}
	if got := m1.Header.Values("X-Multi"); !reflect.DeepEqual(got, []string{"b", "c"}) || m1.Header.Get("X-Single") != "a" {
		t.Errorf("m1 headers = %v", m1.Header)
	}
	if m1.DialTimeout != 2*time.Second {
		t.Errorf("m1 dial timeout = %v", m1.DialTimeout)
	}
	if m2.TLS == nil || !m2.TLS.InsecureSkipVerify {
		t.Errorf("m2 skip_verify not applied: %+v", m2.TLS)
	}
	if m3.TLS != nil || m3.Scheme != "http" {
		t.Errorf("m3 = %+v", m3)
	}
	if server.TLS == nil || server.TLS.RootCAs == nil || server.TLS.InsecureSkipVerify {
		t.Errorf("server TLS = %+v", server.TLS)
	}
	// Hosts with TLS settings get a transport of their own; others share.
	r, err := New(Options{ConfigPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.config().byTLS); got != 3 {
		t.Errorf("%d TLS transports, want 3 (m1, m2, server)", got)
	}
}

func TestHostsInvalid(t *testing.T) {
	for name, content := range map[string]string{
		"toml syntax":          `server = `,
		"unknown capability":   "[host.\"https://m\"]\ncapabilities = [\"pul\"]",
		"ftp scheme":           `server = "ftp://x"`,
		"credentials in URL":   `server = "https://user:pw@x"`,
		"query in URL":         `server = "https://x/?a=b"`,
		"missing ca file":      "[host.\"https://m\"]\nca = \"nope.crt\"",
		"ca not PEM":           "[host.\"https://m\"]\nca = \"hosts.toml\"",
		"ca wrong type":        "[host.\"https://m\"]\nca = 3",
		"client pair of three": "[host.\"https://m\"]\nclient = [[\"a\", \"b\", \"c\"]]",
		"header wrong type":    "[host.\"https://m\"]\nheader = { X = 1 }",
		"bad dial timeout":     "[host.\"https://m\"]\ndial_timeout = \"soon\"",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeHosts(t, dir, map[string]string{"example.com": content})
			_, err := LoadHosts(dir)
			if err == nil {
				t.Fatal("LoadHosts succeeded")
			}
			if name != "missing ca file" && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %v does not wrap ErrInvalidArgument", err)
			}
		})
	}
}
