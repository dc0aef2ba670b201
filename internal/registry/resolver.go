// Package registry fetches images from OCI/Docker registries: it reads
// containerd-style hosts.toml mirror configuration, picks credentials (from
// the CRI request or a node-level Docker config.json matched the way kubelet
// matches it), and fetches manifests and blobs, trying each configured host
// of a registry in order. Authentication handshakes (basic, bearer tokens)
// come from go-containerregistry's transport.
package registry

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Options configure a Resolver.
type Options struct {
	ConfigPath string // hosts.toml directory (containerd's config_path); may be ""
	AuthFile   string // Docker config.json with node-level credentials; may be ""
	UserAgent  string
	// Transport for tests; nil = a default with sane timeouts (dial 30s,
	// TLS 10s, response header 30s).
	Transport http.RoundTripper
}

// Resolver fetches manifests and blobs. It is safe for concurrent use.
type Resolver struct {
	// mu guards cfg and opts; cfg itself is immutable once published.
	mu   sync.RWMutex
	cfg  *config
	opts Options

	// cacheMu guards the fields below. Never held while doing I/O.
	cacheMu sync.Mutex
	auths   map[authKey]*authEntry
	// preferred maps a repository name to the URL of the host that last
	// answered for it, so blobs come from where the manifest came from.
	preferred map[string]string
}

// config is everything Reload replaces at once.
type config struct {
	hosts *HostsConfig
	// hostsStamp describes the hosts directory as it was read (hostsStamp).
	hostsStamp string
	keyring    *Keyring
	userAgent  string
	base       http.RoundTripper
	// byTLS holds the transports of hosts with their own TLS or dial
	// settings, built at load so that hosts sharing them share connections.
	byTLS map[hostTransportKey]http.RoundTripper
}

const (
	// authTTL bounds how long an authenticated transport (and its bearer
	// token, refreshed on 401 anyway) is reused.
	authTTL = 10 * time.Minute
	// maxCacheEntries bounds the auth and preferred-host caches.
	maxCacheEntries = 1024
)

// New reads the hosts directory and the auth file.
func New(opts Options) (*Resolver, error) {
	cfg, err := loadConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Resolver{cfg: cfg, opts: opts, auths: map[authKey]*authEntry{}, preferred: map[string]string{}}, nil
}

// Reload re-reads the hosts directory and the auth file (on SIGHUP). On
// error the previous configuration stays in force.
func (r *Resolver) Reload(opts Options) error {
	cfg, err := loadConfig(opts)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cfg, r.opts = cfg, opts
	r.mu.Unlock()
	r.cacheMu.Lock()
	r.auths = map[authKey]*authEntry{}
	r.preferred = map[string]string{}
	r.cacheMu.Unlock()
	return nil
}

func loadConfig(opts Options) (*config, error) {
	stamp := hostsStamp(opts.ConfigPath)
	hosts, err := LoadHosts(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	keyring, err := LoadKeyring(opts.AuthFile)
	if err != nil {
		return nil, err
	}
	base := opts.Transport
	if base == nil {
		base = newDefaultTransport()
	}
	cfg := &config{hosts: hosts, hostsStamp: stamp, keyring: keyring, userAgent: opts.UserAgent, base: base,
		byTLS: map[hostTransportKey]http.RoundTripper{}}
	for _, hs := range hosts.hosts {
		for _, h := range hs {
			k := hostTransportKey{h.TLS, h.DialTimeout}
			if _, ok := cfg.byTLS[k]; !ok && (h.TLS != nil || h.DialTimeout != 0) {
				cfg.byTLS[k] = transportFor(base, h)
			}
		}
	}
	return cfg, nil
}

// configForPull is config, re-read first when the hosts directory changed
// since it was read: as in containerd, an edited hosts.toml (or certificate
// file beside it) applies at the next pull, no SIGHUP needed. A directory
// that no longer loads fails the pull with the reason: a half-read mirror
// configuration could send pulls where the operator said they must not go.
func (r *Resolver) configForPull() (*config, error) {
	r.mu.RLock()
	cfg, opts := r.cfg, r.opts
	r.mu.RUnlock()
	if hostsStamp(opts.ConfigPath) == cfg.hostsStamp {
		return cfg, nil
	}
	if err := r.Reload(opts); err != nil {
		return nil, fmt.Errorf("registry hosts %s changed: %w", opts.ConfigPath, err)
	}
	return r.config(), nil
}

// hostsStamp describes what of dir LoadHosts reads: the name, size, mtime
// and inode of every file in its registry directories, in one string that
// changes with any edit, rename or replacement (editors write a new file).
// Certificate files named by absolute paths elsewhere are not watched.
func hostsStamp(dir string) string {
	if dir == "" {
		return ""
	}
	var b strings.Builder
	regs, err := os.ReadDir(dir)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	for _, reg := range regs {
		if !reg.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, reg.Name()))
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", reg.Name(), err)
			continue
		}
		for _, f := range files {
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(dir, reg.Name(), f.Name()), &st); err != nil {
				continue
			}
			fmt.Fprintf(&b, "%s/%s %d %d.%d %d\n", reg.Name(), f.Name(), st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ino)
		}
	}
	return b.String()
}

func (r *Resolver) config() *config {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cfg
}

// roundTripper is the unauthenticated transport for h: TLS settings,
// scheme and path rewriting, user agent.
func (c *config) roundTripper(h Host) http.RoundTripper {
	base := c.base
	if rt, ok := c.byTLS[hostTransportKey{h.TLS, h.DialTimeout}]; ok {
		base = rt
	}
	return transport.NewUserAgent(&hostRewriter{host: h, inner: base}, c.userAgent)
}

// remember records that h answered for repo.
func (r *Resolver) remember(repo string, h Host) {
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	if len(r.preferred) >= maxCacheEntries {
		r.preferred = map[string]string{}
	}
	r.preferred[repo] = h.URL()
}

// pullHosts lists the hosts of repo's registry that can serve content by
// digest, the one that answered Resolve for repo first.
func (r *Resolver) pullHosts(cfg *config, registry, repo string) []Host {
	hosts := filterHosts(cfg.hosts.Hosts(registry), CapPull)
	r.cacheMu.Lock()
	pref := r.preferred[repo]
	r.cacheMu.Unlock()
	for i, h := range hosts {
		if i > 0 && h.URL() == pref {
			out := make([]Host, 0, len(hosts))
			out = append(out, h)
			out = append(out, hosts[:i]...)
			return append(out, hosts[i+1:]...)
		}
	}
	return hosts
}

func filterHosts(hosts []Host, want Capabilities) []Host {
	out := make([]Host, 0, len(hosts))
	for _, h := range hosts {
		if h.Capabilities.Has(want) {
			out = append(out, h)
		}
	}
	return out
}
