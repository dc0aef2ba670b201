package registry

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Capabilities of a registry host, as containerd's hosts.toml names them.
type Capabilities uint8

const (
	CapPull Capabilities = 1 << iota
	CapResolve
	CapPush
	// CapReferrers is accepted for containerd's files; Berth does not
	// use the referrers API.
	CapReferrers

	capAll = CapPull | CapResolve | CapPush
)

// Has reports whether c includes every capability of want.
func (c Capabilities) Has(want Capabilities) bool { return c&want == want }

// Host is one endpoint to try for a registry: a mirror from a [host] table or
// the upstream server.
type Host struct {
	// Scheme is "http" or "https".
	Scheme string
	// Host is host[:port] as it goes into the URL.
	Host string
	// Path is the API root, "/v2" unless a mirror serves it elsewhere
	// (override_path): requests go to Scheme://Host+Path+"/<repo>/manifests/…".
	Path         string
	Capabilities Capabilities
	// Header is added to every request to this host.
	Header http.Header
	// TLS is nil for the system roots and no client certificate.
	TLS *tls.Config
	// DialTimeout is 0 for the default.
	DialTimeout time.Duration
	// Namespace is, for a mirror, the registry it stands in for: sent as
	// ?ns=<registry> on its requests, as containerd does, so that one
	// pull-through cache can serve several upstreams. "" for a server.
	Namespace string
}

// URL is the host's API root as written in logs and errors.
func (h Host) URL() string { return h.Scheme + "://" + h.Host + h.Path }

// HostsConfig is a parsed containerd-style config_path directory: one
// <registry>/hosts.toml per registry, _default/hosts.toml for the others.
type HostsConfig struct {
	dir   string
	hosts map[string][]Host // by directory name; "_default" is the fallback
}

// defaultHostsDir names the fallback directory, as containerd does.
const defaultHostsDir = "_default"

// LoadHosts reads every <dir>/*/hosts.toml; a <dir>/<registry> without one
// still gives that registry's server the Docker-style certificate files it
// holds (loadCertDir). An empty dir, or one that does not exist, gives the
// built-in defaults for every registry. Any malformed
// file, or a CA/certificate it names that cannot be read, is an error: a
// half-applied mirror configuration would send pulls where the operator
// said they must not go.
func LoadHosts(dir string) (*HostsConfig, error) {
	c := &HostsConfig{dir: dir, hosts: map[string][]Host{}}
	if dir == "" {
		return c, nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read registry hosts dir %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name(), "hosts.toml")
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			h, found, err := loadCertDir(e.Name(), filepath.Dir(path))
			if err != nil {
				return nil, err
			}
			if found {
				c.hosts[e.Name()] = []Host{h}
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		hosts, err := parseHostsFile(e.Name(), filepath.Dir(path), data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		c.hosts[e.Name()] = hosts
	}
	return c, nil
}

// Hosts is the ordered list of endpoints for registry (a reference's domain,
// e.g. docker.io or 127.0.0.1:5000): the [host] entries in file order, then
// the server. The result is shared: callers must not modify it.
func (c *HostsConfig) Hosts(registry string) []Host {
	if c != nil {
		if hs, ok := c.hosts[registry]; ok {
			return hs
		}
		if hs, ok := c.hosts[defaultHostsDir]; ok {
			return withUpstream(hs, registry)
		}
	}
	return []Host{defaultUpstream(registry)}
}

// withUpstream is a _default file's hosts for registry: its mirrors named
// as standing in for registry, and registry's upstream as the server when
// the file names none.
func withUpstream(hs []Host, registry string) []Host {
	out := append([]Host(nil), hs...)
	for i := range out[:len(out)-1] {
		out[i].Namespace = registry
	}
	last := &out[len(out)-1]
	if last.Host == "" {
		up := defaultUpstream(registry)
		up.Capabilities = last.Capabilities
		up.Header = last.Header
		up.TLS = last.TLS
		up.DialTimeout = last.DialTimeout
		*last = up
	}
	return out
}

// defaultUpstream is where a registry lives when nothing configures it:
// HTTPS, except loopback registries, which are plain HTTP (as in containerd:
// the test registry is http://127.0.0.1:5000).
func defaultUpstream(registry string) Host {
	h := Host{Scheme: "https", Host: registry, Path: "/v2", Capabilities: capAll}
	if registry == "docker.io" {
		h.Host = "registry-1.docker.io"
	}
	if isLoopback(registry) {
		h.Scheme = "http"
	}
	return h
}

// isLoopback reports whether hostport names this machine: localhost,
// 127.0.0.0/8 or ::1, with or without a port.
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// hostFields are the per-host keys of hosts.toml; they appear under each
// [host."URL"] table and at the top level for the server.
type hostFields struct {
	Capabilities []string       `toml:"capabilities"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
	DialTimeout  string         `toml:"dial_timeout"`
}

type hostsFile struct {
	Server string `toml:"server"`
	hostFields
	Host map[string]hostFields `toml:"host"`
}

// parseHostsFile parses one hosts.toml of the registry directory name reg;
// relative certificate paths are relative to baseDir. The last Host is the
// server; for _default without a server its Host is "" (filled per registry).
func parseHostsFile(reg, baseDir string, data []byte) ([]Host, error) {
	var f hostsFile
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&f)
	if err != nil {
		return nil, fmt.Errorf("parse: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	// The [host] tables are tried in file order, which a Go map loses: take
	// the order from the decoder's key list.
	var order []string
	seen := map[string]bool{}
	for _, k := range md.Keys() {
		if len(k) >= 2 && k[0] == "host" && !seen[k[1]] {
			seen[k[1]] = true
			order = append(order, k[1])
		}
	}
	var hosts []Host
	for _, u := range order {
		h, err := parseHost(u, f.Host[u], baseDir)
		if err != nil {
			return nil, fmt.Errorf("host %q: %w", u, err)
		}
		if reg != defaultHostsDir {
			h.Namespace = reg // _default: per registry, in withUpstream
		}
		hosts = append(hosts, h)
	}
	var server Host
	switch {
	case f.Server != "":
		server, err = parseHost(f.Server, f.hostFields, baseDir)
		if err != nil {
			return nil, fmt.Errorf("server %q: %w", f.Server, err)
		}
	case reg == defaultHostsDir:
		// Per registry: see withUpstream. Parse the fields now anyway, to
		// report errors at load time.
		server, err = parseHostFields(Host{Scheme: "https", Path: "/v2"}, f.hostFields, baseDir)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		server.Host = ""
	default:
		up := defaultUpstream(reg)
		server, err = parseHostFields(up, f.hostFields, baseDir)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	return append(hosts, server), nil
}

// parseHost parses a [host] key or the server value: a URL, with https
// assumed when the scheme is missing.
func parseHost(raw string, fields hostFields, baseDir string) (Host, error) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return Host{}, fmt.Errorf("bad URL: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return Host{}, fmt.Errorf("scheme %q is not http or https: %w", u.Scheme, errdefs.ErrInvalidArgument)
	case u.Host == "":
		return Host{}, fmt.Errorf("no host in URL: %w", errdefs.ErrInvalidArgument)
	case u.User != nil:
		// Credentials belong in the auth file, not in a URL that ends up in
		// logs and error messages.
		return Host{}, fmt.Errorf("URL must not carry credentials: %w", errdefs.ErrInvalidArgument)
	case u.RawQuery != "" || u.Fragment != "":
		return Host{}, fmt.Errorf("URL must not have a query or fragment: %w", errdefs.ErrInvalidArgument)
	}
	h := Host{Scheme: u.Scheme, Host: u.Host}
	if h.Host == "docker.io" {
		// docker.io serves no registry API, and go-containerregistry would
		// silently talk to index.docker.io instead: name the real endpoint.
		h.Host = "registry-1.docker.io"
	}
	p := strings.TrimSuffix(u.Path, "/")
	if fields.OverridePath {
		h.Path = p
	} else {
		if !strings.HasSuffix(p, "/v2") {
			p += "/v2"
		}
		h.Path = p
	}
	return parseHostFields(h, fields, baseDir)
}

// parseHostFields applies capabilities, headers, TLS and timeouts to h.
func parseHostFields(h Host, f hostFields, baseDir string) (Host, error) {
	if f.Capabilities == nil {
		h.Capabilities = capAll
	} else {
		h.Capabilities = 0
		for _, c := range f.Capabilities {
			switch c {
			case "pull":
				h.Capabilities |= CapPull
			case "resolve":
				h.Capabilities |= CapResolve
			case "push":
				h.Capabilities |= CapPush
			case "referrers":
				h.Capabilities |= CapReferrers
			default:
				return Host{}, fmt.Errorf("unknown capability %q: %w", c, errdefs.ErrInvalidArgument)
			}
		}
	}
	if len(f.Header) > 0 {
		h.Header = http.Header{}
		for k, v := range f.Header {
			vals, err := stringOrList(v)
			if err != nil {
				return Host{}, fmt.Errorf("header %q: %w", k, err)
			}
			for _, s := range vals {
				h.Header.Add(k, s)
			}
		}
	}
	if f.DialTimeout != "" {
		d, err := time.ParseDuration(f.DialTimeout)
		if err != nil || d <= 0 {
			return Host{}, fmt.Errorf("dial_timeout %q: not a positive duration: %w", f.DialTimeout, errdefs.ErrInvalidArgument)
		}
		h.DialTimeout = d
	}
	tc, err := tlsConfig(f, baseDir)
	if err != nil {
		return Host{}, err
	}
	h.TLS = tc
	return h, nil
}

// stringOrList reads a TOML value that may be one string or a list of them.
func stringOrList(v any) ([]string, error) {
	switch s := v.(type) {
	case string:
		return []string{s}, nil
	case []any:
		out := make([]string, 0, len(s))
		for _, e := range s {
			str, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("list holds %T, want strings: %w", e, errdefs.ErrInvalidArgument)
			}
			out = append(out, str)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a string or a list of strings, got %T: %w", v, errdefs.ErrInvalidArgument)
}
