package registry

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func writeAuthFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func users(as []Auth) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Username)
	}
	return out
}

func TestKeyringLookup(t *testing.T) {
	path := writeAuthFile(t, `{"auths": {
		"https://index.docker.io/v1/": {"auth": "`+b64("hub:pw")+`"},
		"*.my-registry.io/images":     {"username": "wild", "password": "pw"},
		"my-registry.io":              {"auth": "`+b64("plain:pw")+`"},
		"my-registry.io/images/app":   {"auth": "`+b64("app:pw")+`"},
		"http://ported.io:5000":       {"auth": "`+b64("port:pw")+`"},
		"quay.io/team":                {"identitytoken": "tok", "username": "team"},
		"quay.io":                     {"username": "quay", "password": "pw"},
		"gcr.io/v2/":                  {"username": "gcr", "password": "pw"},
		"127.0.0.1:5000":              {"username": "local", "password": "pw"}
	}}`)
	k, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		image string
		want  []string
	}{
		// Docker Hub images fall back to index.docker.io.
		{"docker.io/library/busybox", []string{"hub"}},
		// Wildcard labels: one label per *, same label count.
		{"eu.my-registry.io/images/x", []string{"wild"}},
		{"a.b.my-registry.io/images/x", nil},
		// Path prefix of the wildcard key must match too.
		{"eu.my-registry.io/other/x", nil},
		// Most specific key first, all matching keys contribute.
		{"my-registry.io/images/app", []string{"app", "plain"}},
		{"my-registry.io/images/application", []string{"app", "plain"}}, // string prefix, as kubelet
		{"my-registry.io/images/other", []string{"plain"}},
		// Ports must match exactly; the scheme of the key is ignored.
		{"ported.io:5000/x", []string{"port"}},
		{"ported.io/x", nil},
		{"ported.io:5001/x", nil},
		{"quay.io/team/app", []string{"team", "quay"}},
		{"quay.io/other", []string{"quay"}},
		// /v2/ in a key means the bare host.
		{"gcr.io/project/app", []string{"gcr"}},
		{"127.0.0.1:5000/e2e-test-images/busybox", []string{"local"}},
		{"127.0.0.1:5001/x", nil},
		{"unknown.io/x", nil},
	}
	for _, tt := range tests {
		if got := users(k.Lookup(tt.image)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Lookup(%s) = %v, want %v", tt.image, got, tt.want)
		}
	}
	if a := k.Lookup("quay.io/team/app")[0]; a.IdentityToken != "tok" {
		t.Errorf("identity token not kept")
	}
	if a := k.Lookup("docker.io/library/busybox")[0]; a.Password != "pw" {
		t.Errorf("auth field not decoded")
	}
}

func TestKeyringLegacyAndEmpty(t *testing.T) {
	k, err := LoadKeyring(writeAuthFile(t, `{"legacy.io": {"auth": "`+b64("old:pw")+`", "email": "x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := users(k.Lookup("legacy.io/a")); !reflect.DeepEqual(got, []string{"old"}) {
		t.Errorf("legacy lookup = %v", got)
	}
	for _, p := range []string{"", filepath.Join(t.TempDir(), "absent.json")} {
		k, err := LoadKeyring(p)
		if err != nil || k.Lookup("docker.io/library/busybox") != nil {
			t.Errorf("LoadKeyring(%q) = %v, %v", p, k, err)
		}
	}
	var nilK *Keyring
	if nilK.Lookup("x.io/a") != nil {
		t.Error("nil keyring returned credentials")
	}
}

func TestKeyringInvalidNeverQuotesSecrets(t *testing.T) {
	for name, content := range map[string]string{
		"not json":      `{"auths": {"x.io": {"auth": "c2VjcmV0`,
		"bad base64":    `{"auths": {"x.io": {"auth": "secret!!"}}}`,
		"no colon":      `{"auths": {"x.io": {"auth": "` + b64("secretvalue") + `"}}}`,
		"auths not map": `{"auths": "secretvalue"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadKeyring(writeAuthFile(t, content))
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error = %v, want ErrInvalidArgument", err)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "c2VjcmV0") {
				t.Errorf("error quotes the secret: %v", err)
			}
		})
	}
}

func TestAuthRedacted(t *testing.T) {
	a := Auth{Username: "user", Password: "hunter2", Auth: b64("user:hunter2"), IdentityToken: "idtok", RegistryToken: "regtok"}
	type wrapper struct{ A Auth }
	for _, s := range []string{
		fmt.Sprint(a), fmt.Sprintf("%v %+v %#v %s %q %x", a, a, a, a, a, a),
		fmt.Sprintf("%v %+v", &a, &a), fmt.Sprintf("%+v %#v", wrapper{a}, wrapper{a}), a.String(), a.GoString(),
	} {
		for _, secret := range []string{"hunter2", "idtok", "regtok", "user", a.Auth} {
			if strings.Contains(s, secret) {
				t.Errorf("formatted Auth %q reveals %q", s, secret)
			}
		}
	}
}

func TestAuthConfig(t *testing.T) {
	a := &Auth{Auth: b64("u:p:with:colons")}
	c, err := a.authConfig()
	if err != nil || c.Username != "u" || c.Password != "p:with:colons" {
		t.Errorf("authConfig = %q/%q, %v", c.Username, c.Password, err)
	}
	if _, err := (&Auth{Auth: "hunter2!"}).authConfig(); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad auth field: %v", err)
	}
	if !(*Auth)(nil).isEmpty() || !(&Auth{ServerAddress: "x"}).isEmpty() || (&Auth{RegistryToken: "t"}).isEmpty() {
		t.Error("isEmpty wrong")
	}
}

func TestServerMatches(t *testing.T) {
	tests := []struct {
		addr, domain, host string
		want               bool
	}{
		{"https://index.docker.io/v1/", "docker.io", "registry-1.docker.io", true},
		{"docker.io", "docker.io", "127.0.0.1:5000", true},
		{"quay.io", "quay.io", "mirror.local", true},
		{"mirror.local", "quay.io", "mirror.local", true},
		{"other.io", "quay.io", "mirror.local", false},
		{"quay.io", "docker.io", "registry-1.docker.io", false},
	}
	for _, tt := range tests {
		if got := serverMatches(tt.addr, tt.domain, tt.host); got != tt.want {
			t.Errorf("serverMatches(%q, %q, %q) = %v", tt.addr, tt.domain, tt.host, got)
		}
	}
}
