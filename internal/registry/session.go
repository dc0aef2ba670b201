package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berth-cri/berth/internal/errdefs"
)

// authKey identifies an authenticated transport: one per host, repository
// (bearer tokens are scoped to it) and credential.
type authKey struct {
	cfg  *config // a Reload starts afresh
	host string  // Host.URL()
	repo string
	cred [32]byte
}

// authEntry is a cached authenticated transport; done is closed once rt or
// err is set, so concurrent fetches of one image share one handshake.
type authEntry struct {
	done    chan struct{}
	rt      http.RoundTripper
	err     error
	created time.Time
}

// candidates lists the credentials to try on h for repo, in order; a nil
// entry means anonymous. Request credentials, when present, are the only
// ones tried (kubelet iterates over its own keyring). Otherwise the node
// auth file is consulted: for a mirror, keys matching the mirror itself;
// for the server entry (the registry as the operator defines it), also keys
// matching the image name.
func candidates(cfg *config, h Host, isServer bool, ref refInfo, auth *Auth) []*Auth {
	if !auth.isEmpty() {
		if auth.ServerAddress == "" || serverMatches(auth.ServerAddress, ref.domain, h.Host) {
			return []*Auth{auth}
		}
		return []*Auth{nil}
	}
	var out []*Auth
	seen := map[[32]byte]bool{}
	add := func(as []Auth) {
		for i := range as {
			if fp := as[i].fingerprint(); !seen[fp] {
				seen[fp] = true
				out = append(out, &as[i])
			}
		}
	}
	add(cfg.keyring.Lookup(h.Host + "/" + ref.path))
	if isServer {
		add(cfg.keyring.Lookup(ref.name))
	}
	if len(out) == 0 {
		return []*Auth{nil}
	}
	return out
}

// serverMatches reports whether a CRI AuthConfig.server_address names the
// image's registry or the host being contacted.
func serverMatches(addr, domain, host string) bool {
	s := addr
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	a := u.Host
	docker := func(x string) bool {
		return x == "docker.io" || x == "index.docker.io" || x == "registry-1.docker.io"
	}
	return a == domain || a == host || (docker(a) && (docker(domain) || docker(host)))
}

// client returns an HTTP client for h, authenticated for pulls of repo with
// cred (nil: anonymous), reusing a cached handshake when there is one.
func (r *Resolver) client(ctx context.Context, cfg *config, h Host, repo string, cred *Auth) (*http.Client, error) {
	key := authKey{cfg: cfg, host: h.URL(), repo: repo, cred: cred.fingerprint()}
	for {
		r.cacheMu.Lock()
		e, ok := r.auths[key]
		if ok && e.err == nil && isDone(e) && time.Since(e.created) > authTTL {
			delete(r.auths, key)
			ok = false
		}
		if !ok {
			e = &authEntry{done: make(chan struct{}), created: time.Now()}
			r.pruneLocked()
			r.auths[key] = e
			r.cacheMu.Unlock()
			e.rt, e.err = r.handshake(ctx, cfg, h, repo, cred)
			close(e.done)
			if e.err != nil {
				r.cacheMu.Lock()
				if r.auths[key] == e {
					delete(r.auths, key)
				}
				r.cacheMu.Unlock()
				return nil, e.err
			}
			return newClient(e.rt), nil
		}
		r.cacheMu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e.err == nil {
			return newClient(e.rt), nil
		}
		// The handshake we waited for failed, perhaps only because its
		// caller gave up: try our own, unless ours has given up too.
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !errors.Is(e.err, context.Canceled) && !errors.Is(e.err, context.DeadlineExceeded) {
			return nil, e.err
		}
	}
}

func isDone(e *authEntry) bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// pruneLocked keeps the cache bounded; cacheMu must be held.
func (r *Resolver) pruneLocked() {
	if len(r.auths) < maxCacheEntries {
		return
	}
	for k, e := range r.auths {
		if isDone(e) {
			delete(r.auths, k)
		}
	}
}

// handshake pings h and, as the challenge asks, sets up basic auth or
// fetches a bearer token scoped to pulling repo.
func (r *Resolver) handshake(ctx context.Context, cfg *config, h Host, repo string, cred *Auth) (http.RoundTripper, error) {
	opts := []name.Option{name.WeakValidation}
	if h.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(h.Host, opts...)
	if err != nil {
		return nil, &hostError{host: h.URL(), kind: errdefs.ErrInvalidArgument, reason: "bad registry host name"}
	}
	var authr authn.Authenticator = authn.Anonymous
	if !cred.isEmpty() {
		ac, err := cred.authConfig()
		if err != nil {
			return nil, &hostError{host: h.URL(), kind: errdefs.ErrUnauthenticated, reason: err.Error()}
		}
		authr = authn.FromConfig(ac)
	}
	scopes := []string{reg.Repo(repo).Scope(transport.PullScope)}
	return transport.NewWithContext(ctx, reg, authr, cfg.roundTripper(h), scopes)
}

// maxRedirects bounds the redirects one request follows (blob storage needs
// one or two); more is a loop or a registry playing games.
const maxRedirects = 10

// newClient is an HTTP client over rt whose redirect loops end with an error
// that says so.
func newClient(rt http.RoundTripper) *http.Client {
	return &http.Client{Transport: rt, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects (a redirect loop?)", maxRedirects)
		}
		return nil
	}}
}
