package registry

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-cri/berth/internal/errdefs"
)

// tlsConfig builds the TLS settings of a host from skip_verify, ca and
// client; nil when none is set. Files are read now, at load time.
func tlsConfig(f hostFields, baseDir string) (*tls.Config, error) {
	if f.SkipVerify == nil && f.CA == nil && f.Client == nil {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.SkipVerify != nil && *f.SkipVerify {
		tc.InsecureSkipVerify = true
	}
	if f.CA != nil {
		paths, err := stringOrList(f.CA)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, p := range paths {
			p = absPath(p, baseDir)
			pem, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("ca: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca %s: no PEM certificate: %w", p, errdefs.ErrInvalidArgument)
			}
		}
		tc.RootCAs = pool
	}
	if f.Client != nil {
		pairs, err := clientPairs(f.Client)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		for _, pr := range pairs {
			cert, key := absPath(pr[0], baseDir), pr[1]
			if key == "" {
				key = cert // one PEM file holding both
			} else {
				key = absPath(key, baseDir)
			}
			c, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("client certificate %s: %v: %w", cert, err, errdefs.ErrInvalidArgument)
			}
			tc.Certificates = append(tc.Certificates, c)
		}
	}
	return tc, nil
}

// clientPairs reads client = "cert.pem" | ["cert.pem", ["c.pem", "k.pem"], …].
func clientPairs(v any) ([][2]string, error) {
	switch c := v.(type) {
	case string:
		return [][2]string{{c, ""}}, nil
	case []any:
		var out [][2]string
		for _, e := range c {
			switch p := e.(type) {
			case string:
				out = append(out, [2]string{p, ""})
			case []any:
				if len(p) != 2 {
					return nil, fmt.Errorf("a pair must be [cert, key]: %w", errdefs.ErrInvalidArgument)
				}
				cert, ok1 := p[0].(string)
				key, ok2 := p[1].(string)
				if !ok1 || !ok2 {
					return nil, fmt.Errorf("a pair must be two strings: %w", errdefs.ErrInvalidArgument)
				}
				out = append(out, [2]string{cert, key})
			default:
				return nil, fmt.Errorf("unexpected %T: %w", e, errdefs.ErrInvalidArgument)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a string or a list, got %T: %w", v, errdefs.ErrInvalidArgument)
}

func absPath(p, baseDir string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(baseDir, p)
}

// loadCertDir reads a registry directory without hosts.toml the way Docker
// (and containerd after it) reads /etc/docker/certs.d/<registry>: each
// *.crt is a CA added to the system roots, each *.cert a client
// certificate whose key is the *.key of the same name. found is false when
// the directory holds none of them: the registry keeps the defaults.
func loadCertDir(reg, dir string) (h Host, found bool, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return Host{}, false, fmt.Errorf("read %s: %w", dir, err)
	}
	var f hostFields
	var cas, clients []any
	for _, e := range ents {
		name := e.Name()
		switch {
		case e.IsDir():
		case strings.HasSuffix(name, ".crt"):
			cas = append(cas, name)
		case strings.HasSuffix(name, ".cert"):
			key := strings.TrimSuffix(name, ".cert") + ".key"
			if _, err := os.Stat(filepath.Join(dir, key)); err != nil {
				return Host{}, false, fmt.Errorf("client certificate %s: no key %s beside it: %w", filepath.Join(dir, name), key, errdefs.ErrInvalidArgument)
			}
			clients = append(clients, []any{name, key})
		}
	}
	if cas == nil && clients == nil {
		return Host{}, false, nil
	}
	if cas != nil {
		f.CA = cas
	}
	if clients != nil {
		f.Client = clients
	}
	h, err = parseHostFields(defaultUpstream(reg), f, dir)
	if err != nil {
		return Host{}, false, fmt.Errorf("%s: %w", dir, err)
	}
	return h, true, nil
}
