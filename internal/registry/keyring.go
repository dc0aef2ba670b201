package registry

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Keyring holds node-level credentials from a Docker config.json and looks
// them up the way kubelet's credentialprovider keyring does, so that one
// file means the same to kubelet and to berthd:
//   - keys may carry a scheme (ignored) and a /v1/ or /v2/ path (ignored);
//   - host labels may be globs (*.my-registry.io), label count must match;
//   - ports must match exactly;
//   - a key path matches as a string prefix of the image path;
//   - every matching key contributes, most specific (reverse-sorted) first;
//   - with no match, an image of the default registry uses index.docker.io.
type Keyring struct {
	index []string          // keys, reverse-sorted: more specific first
	creds map[string][]Auth // by key
}

const defaultRegistryKey = "index.docker.io"

// dockerConfigEntry is one "auths" value of config.json.
type dockerConfigEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// LoadKeyring reads a Docker config.json (the {"auths": {…}} form, or the
// legacy .dockercfg map kubelet also reads). An empty path or a missing file
// gives an empty keyring; a malformed file is an error that never quotes the
// file's content.
func LoadKeyring(path string) (*Keyring, error) {
	k := &Keyring{creds: map[string][]Auth{}}
	if path == "" {
		return k, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read auth file %s: %w", path, err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("auth file %s is not a JSON object: %w", filepath.Base(path), errdefs.ErrInvalidArgument)
	}
	entries := top
	if auths, ok := top["auths"]; ok {
		entries = nil
		if err := json.Unmarshal(auths, &entries); err != nil {
			return nil, fmt.Errorf("auth file %s: \"auths\" is not an object: %w", filepath.Base(path), errdefs.ErrInvalidArgument)
		}
	}
	for key, raw := range entries {
		var e dockerConfigEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			// A config.json without "auths" may still hold other settings
			// (credsStore, proxies…) at the top: skip what is not an entry.
			continue
		}
		a := Auth{
			Username:      e.Username,
			Password:      e.Password,
			IdentityToken: e.IdentityToken,
			RegistryToken: e.RegistryToken,
		}
		if e.Auth != "" {
			// As kubelet: a present "auth" field wins over username/password.
			user, pass, err := decodeAuthField(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("auth file %s, entry %q: %w", filepath.Base(path), key, err)
			}
			a.Username, a.Password = user, pass
		}
		k.add(key, a)
	}
	k.sortIndex()
	return k, nil
}

func decodeAuthField(s string) (string, string, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return "", "", fmt.Errorf("\"auth\" is not valid base64: %w", errdefs.ErrInvalidArgument)
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", fmt.Errorf("\"auth\" is not user:password: %w", errdefs.ErrInvalidArgument)
	}
	return user, strings.Trim(pass, "\x00"), nil
}

// add files a under the normalised form of the config key loc.
func (k *Keyring) add(loc string, a Auth) {
	value := loc
	if !strings.HasPrefix(value, "https://") && !strings.HasPrefix(value, "http://") {
		value = "https://" + value
	}
	u, err := url.Parse(value)
	if err != nil || u.Host == "" {
		return // kubelet skips unparsable keys too
	}
	// The docker client treats /v1/ and /v2/ as the bare host.
	p := u.Path
	if strings.HasPrefix(p, "/v2/") || strings.HasPrefix(p, "/v1/") {
		p = p[3:]
	}
	key := u.Host
	if p != "" && p != "/" {
		key = u.Host + p
	}
	if _, ok := k.creds[key]; !ok {
		k.index = append(k.index, key)
	}
	k.creds[key] = append(k.creds[key], a)
}

func (k *Keyring) sortIndex() { sort.Sort(sort.Reverse(sort.StringSlice(k.index))) }

// Lookup returns the credentials for image (a fully qualified name without
// tag, e.g. docker.io/library/busybox or mirror.local:5000/library/busybox),
// most specific first; none when nothing matches.
func (k *Keyring) Lookup(image string) []Auth {
	if k == nil {
		return nil
	}
	var out []Auth
	for _, key := range k.index {
		if globMatch(key, image) {
			out = append(out, k.creds[key]...)
		}
	}
	if len(out) > 0 {
		return out
	}
	if isDefaultRegistryImage(image) {
		return k.creds[defaultRegistryKey]
	}
	return nil
}

// isDefaultRegistryImage reports whether image lives on Docker Hub.
func isDefaultRegistryImage(image string) bool {
	first, _, hasSlash := strings.Cut(image, "/")
	if first == "" {
		return false
	}
	if !hasSlash || first == "docker.io" {
		return true
	}
	return !strings.ContainsAny(first, ".:")
}

// globMatch reports whether the schemeless URL target matches glob, whose
// host labels may hold filepath.Match patterns.
func globMatch(glob, target string) bool {
	g, err := url.Parse("https://" + glob)
	if err != nil {
		return false
	}
	t, err := url.Parse("https://" + target)
	if err != nil {
		return false
	}
	gLabels, gPort := splitHost(g.Host)
	tLabels, tPort := splitHost(t.Host)
	if gPort != tPort || len(gLabels) != len(tLabels) {
		return false
	}
	if !strings.HasPrefix(t.Path, g.Path) {
		return false
	}
	for i := range gLabels {
		if ok, _ := filepath.Match(gLabels[i], tLabels[i]); !ok {
			return false
		}
	}
	return true
}

func splitHost(hostport string) ([]string, string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	return strings.Split(host, "."), port
}
