package registry

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// Auth is a registry credential, as the CRI AuthConfig carries it (this
// package does not import cri-api). Every formatting path prints
// "<redacted>", so a credential that reaches a log line by accident is
// harmless; nothing in this package puts one in an error either.
type Auth struct {
	Username      string
	Password      string
	Auth          string // base64 of "user:password"
	IdentityToken string // exchanged for a registry token (OAuth2 refresh token)
	RegistryToken string // sent as a bearer token as is
	// ServerAddress, when set, is the registry the credential is for; it is
	// then used only for that registry's own hosts.
	ServerAddress string
}

const redacted = "<redacted>"

// String implements fmt.Stringer without revealing anything.
func (Auth) String() string { return redacted }

// GoString implements fmt.GoStringer (%#v) without revealing anything.
func (Auth) GoString() string { return redacted }

// Format implements fmt.Formatter so that every verb, %v, %+v, %q, %x and
// the others, prints "<redacted>".
func (Auth) Format(f fmt.State, _ rune) { fmt.Fprint(f, redacted) }

// isEmpty reports whether a carries no credential at all.
func (a *Auth) isEmpty() bool {
	return a == nil || (a.Username == "" && a.Password == "" && a.Auth == "" &&
		a.IdentityToken == "" && a.RegistryToken == "")
}

// authConfig converts a to go-containerregistry's form, decoding the
// "auth" field when user and password are not given separately.
func (a *Auth) authConfig() (authn.AuthConfig, error) {
	c := authn.AuthConfig{
		Username:      a.Username,
		Password:      a.Password,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	}
	if a.Auth != "" && c.Username == "" && c.Password == "" {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(a.Auth))
		if err != nil {
			// The value itself must not appear in the message.
			return authn.AuthConfig{}, fmt.Errorf("credential \"auth\" field is not valid base64")
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return authn.AuthConfig{}, fmt.Errorf("credential \"auth\" field is not user:password")
		}
		c.Username, c.Password = user, pass
	}
	return c, nil
}

// secrets are the strings of a that must never be shown: every field but
// the user name, and the encodings of user and password a registry may
// echo (the Basic header's base64, a decoded "auth" field's password).
func (a *Auth) secrets() []string {
	if a.isEmpty() {
		return nil
	}
	var out []string
	add := func(s string) {
		if s != "" {
			out = append(out, s)
		}
	}
	add(a.Password)
	add(a.Auth)
	add(a.IdentityToken)
	add(a.RegistryToken)
	if c, err := a.authConfig(); err == nil && c.Password != "" {
		add(c.Password)
		add(base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password)))
		add(base64.URLEncoding.EncodeToString([]byte(c.Username + ":" + c.Password)))
	}
	return out
}

// fingerprint identifies a credential in memory (a cache key) without
// keeping it in a readable form.
func (a *Auth) fingerprint() [32]byte {
	if a.isEmpty() {
		return [32]byte{}
	}
	h := sha256.New()
	for _, s := range []string{a.Username, a.Password, a.Auth, a.IdentityToken, a.RegistryToken} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
