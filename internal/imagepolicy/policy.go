// Package imagepolicy decides which images berthd may run: a policy file
// maps image names (by scope) to accept, reject or Sigstore signature
// requirements, and the Enforcer checks an image's signatures against them
// before any of its layers is unpacked and again at CreateContainer when the
// policy changed since the image was last checked. Signature verification
// is the Sigstore project's (sigstore-go for bundles and certificates,
// sigstore/sigstore for keys); nothing here is hand-written crypto.
package imagepolicy

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// Types of a scope.
const (
	TypeAccept   = "accept"
	TypeReject   = "reject"
	TypeSigstore = "sigstore"
)

// fileVersion is the only policy schema version read.
const fileVersion = 1

// file is the TOML document (docs/image-policy.md).
type file struct {
	Version    int                   `toml:"version"`
	Default    *scopeFile            `toml:"default"`
	Scopes     map[string]scopeFile  `toml:"scopes"`
	Namespaces map[string]namespaceF `toml:"namespaces"`
}

type namespaceF struct {
	Default *scopeFile           `toml:"default"`
	Scopes  map[string]scopeFile `toml:"scopes"`
}

type scopeFile struct {
	Type         string        `toml:"type"`
	Keys         []string      `toml:"keys"`
	KeysRequired string        `toml:"keys_required"`
	Keyless      []keylessFile `toml:"keyless"`
}

type keylessFile struct {
	TrustedRoot            string   `toml:"trusted_root"`
	FulcioCA               string   `toml:"fulcio_ca"`
	RekorKeys              []string `toml:"rekor_keys"`
	CTLogKeys              []string `toml:"ctlog_keys"`
	Issuer                 string   `toml:"issuer"`
	IssuerRegexp           string   `toml:"issuer_regexp"`
	Subject                string   `toml:"subject"`
	SubjectRegexp          string   `toml:"subject_regexp"`
	RequireTlog            *bool    `toml:"require_tlog"`
	RequireSignedTimestamp bool     `toml:"require_signed_timestamp"`
	RequireSCT             *bool    `toml:"require_sct"`
}

// Policy is a loaded policy file. It is immutable.
type Policy struct {
	// Path is the file it was read from.
	Path string
	// Version identifies the policy's content: a hash of the file and of
	// every key and trusted root it names, so an edited key file is a new
	// version too.
	Version string

	def        *Requirement
	scopes     []*Requirement
	namespaces map[string]*nsPolicy
}

type nsPolicy struct {
	def    *Requirement // nil: only the node policy applies there
	scopes []*Requirement
}

// Requirement is what one scope asks of the images it covers.
type Requirement struct {
	// Scope is the scope's text as written ("" for a default), Namespace
	// the Kubernetes namespace whose section it is in ("" for the node's).
	Scope     string
	Namespace string
	Type      string
	// Keys are the public keys (with the file each came from); AllKeys
	// asks for a valid signature by every one of them, else one suffices.
	Keys    []PublicKey
	AllKeys bool
	// Keyless identities: a signature certified for any of them suffices.
	Keyless []Keyless

	glob       bool
	components int
}

// Describe names the scope in messages: `scope "ghcr.io/org"` or `default
// scope`, with its namespace section.
func (r *Requirement) Describe() string {
	s := "default scope"
	if r.Scope != "" {
		s = fmt.Sprintf("scope %q", r.Scope)
	}
	if r.Namespace != "" {
		s += fmt.Sprintf(" of namespace %q", r.Namespace)
	}
	return s
}

// PublicKey is a cosign public key.
type PublicKey struct {
	File string
	Key  crypto.PublicKey
}

// Keyless is one accepted certificate identity and the roots that certify
// it.
type Keyless struct {
	TrustedRoot            *root.TrustedRoot
	TrustedRootFile        string
	Issuer, Subject        string
	IssuerRegexp           string
	SubjectRegexp          string
	RequireTlog            bool
	RequireSignedTimestamp bool
	// RequireSCT asks for a certificate transparency timestamp in the
	// certificate (default: when the trusted root lists CT logs).
	RequireSCT bool
}

// Load reads and checks the policy file at p. Relative key and trusted root
// paths are taken from the file's directory.
func Load(p string) (*Policy, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("image policy: %w", err)
	}
	var f file
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, fmt.Errorf("image policy %s: %w", p, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("image policy %s: unknown key %q (see docs/image-policy.md)", p, und[0].String())
	}
	if f.Version != 0 && f.Version != fileVersion {
		return nil, fmt.Errorf("image policy %s: version %d is not supported (this berthd reads version %d)", p, f.Version, fileVersion)
	}
	if f.Default == nil {
		return nil, fmt.Errorf("image policy %s: a [default] scope is required (type = \"accept\", \"reject\" or \"sigstore\")", p)
	}
	l := loader{dir: filepath.Dir(p), hash: sha256.New(), files: map[string][]byte{}}
	l.hash.Write(data)
	pol := &Policy{Path: p, namespaces: map[string]*nsPolicy{}}
	if pol.def, err = l.requirement("", "", *f.Default); err != nil {
		return nil, fmt.Errorf("image policy %s: [default]: %w", p, err)
	}
	if pol.scopes, err = l.scopes("", f.Scopes); err != nil {
		return nil, fmt.Errorf("image policy %s: %w", p, err)
	}
	for _, ns := range sortedKeys(f.Namespaces) {
		nf := f.Namespaces[ns]
		np := &nsPolicy{}
		if nf.Default != nil {
			if np.def, err = l.requirement("", ns, *nf.Default); err != nil {
				return nil, fmt.Errorf("image policy %s: [namespaces.%q.default]: %w", p, ns, err)
			}
		}
		if np.scopes, err = l.scopes(ns, nf.Scopes); err != nil {
			return nil, fmt.Errorf("image policy %s: namespace %q: %w", p, ns, err)
		}
		pol.namespaces[ns] = np
	}
	// Referenced files are hashed in a fixed order, so the version depends
	// on content only.
	for _, name := range sortedKeys(l.files) {
		fmt.Fprintf(l.hash, "%s\x00%d\x00", name, len(l.files[name]))
		l.hash.Write(l.files[name])
	}
	pol.Version = hex.EncodeToString(l.hash.Sum(nil))[:16]
	return pol, nil
}

type loader struct {
	dir   string
	hash  hash.Hash
	files map[string][]byte
}

func (l *loader) read(p string) (string, []byte, error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(l.dir, p)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return p, nil, err
	}
	l.files[p] = data
	return p, data, nil
}

func (l *loader) scopes(ns string, m map[string]scopeFile) ([]*Requirement, error) {
	var out []*Requirement
	for _, s := range sortedKeys(m) {
		if err := checkScope(s); err != nil {
			return nil, fmt.Errorf("scope %q: %w", s, err)
		}
		r, err := l.requirement(s, ns, m[s])
		if err != nil {
			return nil, fmt.Errorf("scope %q: %w", s, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func (l *loader) requirement(scope, ns string, s scopeFile) (*Requirement, error) {
	r := &Requirement{Scope: scope, Namespace: ns, Type: s.Type, glob: strings.ContainsAny(scope, "*?["), components: strings.Count(scope, "/") + 1}
	switch s.Type {
	case TypeAccept, TypeReject:
		if len(s.Keys) > 0 || len(s.Keyless) > 0 || s.KeysRequired != "" {
			return nil, fmt.Errorf("type %q takes no keys or keyless identities", s.Type)
		}
		return r, nil
	case TypeSigstore:
	case "":
		return nil, errors.New(`type is required: "accept", "reject" or "sigstore"`)
	default:
		return nil, fmt.Errorf("type %q is not accept, reject or sigstore", s.Type)
	}
	if len(s.Keys) == 0 && len(s.Keyless) == 0 {
		return nil, errors.New("a sigstore scope needs keys, keyless identities, or both")
	}
	switch s.KeysRequired {
	case "", "any":
	case "all":
		r.AllKeys = true
	default:
		return nil, fmt.Errorf("keys_required %q is neither any nor all", s.KeysRequired)
	}
	for _, k := range s.Keys {
		p, data, err := l.read(k)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("key %s: not a PEM public key: %w", p, err)
		}
		if err := cryptoutils.ValidatePubKey(pub); err != nil {
			return nil, fmt.Errorf("key %s: %w", p, err)
		}
		r.Keys = append(r.Keys, PublicKey{File: p, Key: pub})
	}
	for i, kf := range s.Keyless {
		k, err := l.keyless(kf)
		if err != nil {
			return nil, fmt.Errorf("keyless entry %d: %w", i, err)
		}
		r.Keyless = append(r.Keyless, k)
	}
	return r, nil
}

func (l *loader) keyless(kf keylessFile) (Keyless, error) {
	k := Keyless{Issuer: kf.Issuer, IssuerRegexp: kf.IssuerRegexp, Subject: kf.Subject, SubjectRegexp: kf.SubjectRegexp,
		RequireTlog: kf.RequireTlog == nil || *kf.RequireTlog, RequireSignedTimestamp: kf.RequireSignedTimestamp}
	if (kf.TrustedRoot == "") == (kf.FulcioCA == "") {
		return k, errors.New("one of trusted_root (a trusted_root.json) and fulcio_ca (with rekor_keys, ctlog_keys) is required")
	}
	if kf.TrustedRoot != "" && (len(kf.RekorKeys) > 0 || len(kf.CTLogKeys) > 0) {
		return k, errors.New("rekor_keys and ctlog_keys go with fulcio_ca; a trusted_root names its logs itself")
	}
	if (k.Issuer == "") == (k.IssuerRegexp == "") {
		return k, errors.New("exactly one of issuer and issuer_regexp is required")
	}
	if (k.Subject == "") == (k.SubjectRegexp == "") {
		return k, errors.New("exactly one of subject and subject_regexp is required")
	}
	for _, re := range []string{k.IssuerRegexp, k.SubjectRegexp} {
		if _, err := regexp.Compile(re); err != nil {
			return k, fmt.Errorf("regexp %q: %w", re, err)
		}
	}
	if kf.TrustedRoot != "" {
		p, data, err := l.read(kf.TrustedRoot)
		if err != nil {
			return k, fmt.Errorf("trusted_root: %w", err)
		}
		k.TrustedRootFile = p
		if k.TrustedRoot, err = root.NewTrustedRootFromJSON(data); err != nil {
			return k, fmt.Errorf("trusted_root %s: %w", p, err)
		}
	} else {
		var err error
		if k.TrustedRoot, err = l.pemRoot(kf); err != nil {
			return k, err
		}
		k.TrustedRootFile = kf.FulcioCA
	}
	p := k.TrustedRootFile
	if len(k.TrustedRoot.FulcioCertificateAuthorities()) == 0 {
		return k, fmt.Errorf("trusted_root %s: names no certificate authority", p)
	}
	if k.RequireTlog && len(k.TrustedRoot.RekorLogs()) == 0 {
		return k, fmt.Errorf("trusted_root %s: names no transparency log, but require_tlog is on", p)
	}
	if k.RequireSignedTimestamp && len(k.TrustedRoot.TimestampingAuthorities()) == 0 {
		return k, fmt.Errorf("trusted_root %s: names no timestamping authority, but require_signed_timestamp is on", p)
	}
	k.RequireSCT = len(k.TrustedRoot.CTLogs()) > 0
	if kf.RequireSCT != nil {
		k.RequireSCT = *kf.RequireSCT
	}
	return k, nil
}

// pemRoot builds a trusted root from PEM files: the Fulcio CA (its root,
// self-signed, and intermediates, in one file) and the public keys of the
// Rekor and CT logs (a log's id is the SHA-256 of its key, as Rekor and CT
// compute it). Timestamping authorities need a trusted_root.json.
func (l *loader) pemRoot(kf keylessFile) (*root.TrustedRoot, error) {
	p, data, err := l.read(kf.FulcioCA)
	if err != nil {
		return nil, fmt.Errorf("fulcio_ca: %w", err)
	}
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(data)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("fulcio_ca %s: no PEM certificate", p)
	}
	ca := &root.FulcioCertificateAuthority{URI: p}
	for _, c := range certs {
		if ca.Root == nil && c.CheckSignatureFrom(c) == nil {
			ca.Root = c
		} else {
			ca.Intermediates = append(ca.Intermediates, c)
		}
	}
	if ca.Root == nil {
		return nil, fmt.Errorf("fulcio_ca %s: no self-signed root certificate", p)
	}
	logs := func(what string, files []string) (map[string]*root.TransparencyLog, error) {
		out := map[string]*root.TransparencyLog{}
		for _, f := range files {
			p, data, err := l.read(f)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
			if err != nil {
				return nil, fmt.Errorf("%s %s: not a PEM public key: %w", what, p, err)
			}
			der, err := cryptoutils.MarshalPublicKeyToDER(pub)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", what, p, err)
			}
			id := sha256.Sum256(der)
			// Valid from the epoch: a PEM key says nothing of its period,
			// and sigstore-go wants a start.
			out[hex.EncodeToString(id[:])] = &root.TransparencyLog{BaseURL: p, ID: id[:], PublicKey: pub,
				HashFunc: crypto.SHA256, SignatureHashFunc: crypto.SHA256, ValidityPeriodStart: time.Unix(0, 0)}
		}
		return out, nil
	}
	rekor, err := logs("rekor_keys", kf.RekorKeys)
	if err != nil {
		return nil, err
	}
	ct, err := logs("ctlog_keys", kf.CTLogKeys)
	if err != nil {
		return nil, err
	}
	return root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{ca}, ct, nil, rekor)
}

// checkScope refuses scopes that could never match a normalised name.
func checkScope(s string) error {
	if s == "" || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//") {
		return errors.New("a scope is a registry host, host/repository prefix or a glob of them")
	}
	if i := strings.IndexByte(s, '/'); strings.Contains(s, "@") || (i >= 0 && strings.Contains(s[i:], ":")) {
		return errors.New("a scope names repositories, not tags or digests")
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("bad glob: %w", err)
	}
	return nil
}

// Decide returns the requirements an image named name (normalised, without
// tag or digest: "docker.io/library/busybox") must meet in namespace ns:
// the node policy's, and, when the namespace has a section of its own, its
// too. Namespace sections only add requirements, so they can only be
// stricter.
func (p *Policy) Decide(name, ns string) []*Requirement {
	out := []*Requirement{match(p.scopes, name, p.def)}
	if np := p.namespaces[ns]; np != nil && ns != "" {
		if r := match(np.scopes, name, np.def); r != nil {
			out = append(out, r)
		}
	}
	return out
}

// match is the most specific of scopes that covers name, else def. A scope
// covers a name when it is the name, a prefix of it at a "/" (a registry
// host covers every repository on it), or a glob (path.Match, "*" stopping
// at "/") matching the name or one of its prefixes. More path components
// are more specific; among equals a literal beats a glob, then the longer
// text wins.
func match(scopes []*Requirement, name string, def *Requirement) *Requirement {
	var best *Requirement
	for _, s := range scopes {
		if !covers(s, name) {
			continue
		}
		if best == nil || moreSpecific(s, best) {
			best = s
		}
	}
	if best == nil {
		return def
	}
	return best
}

func covers(s *Requirement, name string) bool {
	if !s.glob {
		return name == s.Scope || strings.HasPrefix(name, s.Scope+"/")
	}
	parts := strings.Split(name, "/")
	if len(parts) < s.components {
		return false
	}
	ok, _ := path.Match(s.Scope, strings.Join(parts[:s.components], "/"))
	return ok
}

func moreSpecific(a, b *Requirement) bool {
	if a.components != b.components {
		return a.components > b.components
	}
	if a.glob != b.glob {
		return !a.glob
	}
	if len(a.Scope) != len(b.Scope) {
		return len(a.Scope) > len(b.Scope)
	}
	return a.Scope < b.Scope
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
