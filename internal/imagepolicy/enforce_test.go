package imagepolicy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/imagepolicy/sigtest"
	"github.com/berth-cri/berth/internal/registry"
)

// fakeSource is a repository in memory: tags, referrers and blobs.
type fakeSource struct {
	tags      map[string][]byte
	referrers []ocispec.Descriptor
	blobs     map[digest.Digest][]byte
	noAPI     bool  // the registry has no referrers API (404)
	down      error // every call fails with it
	calls     int
}

func newFakeSource() *fakeSource {
	return &fakeSource{tags: map[string][]byte{}, blobs: map[digest.Digest][]byte{}}
}

func (f *fakeSource) Referrers(ctx context.Context, d digest.Digest, at string) ([]ocispec.Descriptor, error) {
	f.calls++
	if f.down != nil {
		return nil, f.down
	}
	if f.noAPI {
		return nil, fmt.Errorf("HTTP 404: %w", errdefs.ErrNotFound)
	}
	return f.referrers, nil
}

func (f *fakeSource) ResolveTag(ctx context.Context, tag string) (ocispec.Descriptor, []byte, error) {
	f.calls++
	if f.down != nil {
		return ocispec.Descriptor{}, nil, f.down
	}
	data, ok := f.tags[tag]
	if !ok {
		return ocispec.Descriptor{}, nil, fmt.Errorf("tag %s: %w", tag, errdefs.ErrNotFound)
	}
	return ocispec.Descriptor{Digest: digest.FromBytes(data)}, data, nil
}

func (f *fakeSource) Fetch(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	f.calls++
	data, ok := f.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return data, nil
}

func (f *fakeSource) blob(mt string, data []byte) ocispec.Descriptor {
	d := digest.FromBytes(data)
	f.blobs[d] = data
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(data))}
}

// addBundle attaches a bundle as a referrer; inIndex puts it in the
// referrers tag schema's index instead of the API's answer.
func (f *fakeSource) addBundle(t testing.TB, k *sigtest.Key, subject digest.Digest, manifest []byte, inIndex bool) {
	data, _ := k.Bundle(t, manifest).MarshalJSON()
	m, _ := json.Marshal(ocispec.Manifest{ArtifactType: MediaTypeBundle, Layers: []ocispec.Descriptor{f.blob(MediaTypeBundle, data)}})
	desc := f.blob(ocispec.MediaTypeImageManifest, m)
	desc.ArtifactType = MediaTypeBundle
	if !inIndex {
		f.referrers = append(f.referrers, desc)
		return
	}
	idx, _ := json.Marshal(ocispec.Index{Manifests: []ocispec.Descriptor{desc}})
	f.tags["sha256-"+subject.Encoded()] = idx
}

// addRawBundle attaches a bundle document as a referrer.
func (f *fakeSource) addRawBundle(data []byte) {
	m, _ := json.Marshal(ocispec.Manifest{ArtifactType: MediaTypeBundle, Layers: []ocispec.Descriptor{f.blob(MediaTypeBundle, data)}})
	desc := f.blob(ocispec.MediaTypeImageManifest, m)
	desc.ArtifactType = MediaTypeBundle
	f.referrers = append(f.referrers, desc)
}

func (f *fakeSource) addCosignTag(t testing.TB, k *sigtest.Key, d digest.Digest) {
	payload := sigtest.Payload("example.com/app", d)
	l := f.blob("application/vnd.dev.cosign.simplesigning.v1+json", payload)
	l.Annotations = map[string]string{annotationSignature: base64.StdEncoding.EncodeToString(k.Sign(t, payload))}
	m, _ := json.Marshal(ocispec.Manifest{Layers: []ocispec.Descriptor{l}})
	f.tags["sha256-"+d.Encoded()+".sig"] = m
}

func enforcer(t *testing.T, body string, key *sigtest.Key) (*Enforcer, string) {
	t.Helper()
	// The key first: writePolicy's file names it.
	dir := t.TempDir()
	key.WritePub(t, dir, "k.pub")
	p := filepath.Join(dir, "policy.toml")
	os.WriteFile(p, []byte(body), 0o644)
	pol, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEnforcer(discardLog(), nil)
	e.SetPolicy(pol)
	return e, p
}

const keyPolicyFile = `
[default]
type = "accept"
[scopes."example.com"]
type = "sigstore"
keys = ["k.pub"]
[scopes."example.com/banned"]
type = "reject"
[namespaces.prod.default]
type = "reject"
`

func TestEnforcerSchemes(t *testing.T) {
	k := sigtest.NewKey(t, "ecdsa")
	tgt := testTarget()
	for _, tc := range []struct {
		name  string
		setup func(f *fakeSource)
		want  string
	}{
		{"referrers API", func(f *fakeSource) { f.addBundle(t, k, tgt.Digest, testManifest, false) }, ""},
		{"referrers tag schema", func(f *fakeSource) { f.noAPI = true; f.addBundle(t, k, tgt.Digest, testManifest, true) }, ""},
		{"cosign tag", func(f *fakeSource) { f.noAPI = true; f.addCosignTag(t, k, tgt.Digest) }, ""},
		{"nothing", func(f *fakeSource) {}, "no signature found"},
		{"other key", func(f *fakeSource) { f.addCosignTag(t, sigtest.NewKey(t, "ed25519"), tgt.Digest) }, "wrong key"},
		{"registry down", func(f *fakeSource) { f.down = fmt.Errorf("%w: connection refused", registry.ErrRegistryUnavailable) }, "RegistryUnavailable"},
	} {
		if tc.want == "RegistryUnavailable" {
			tc.want = "" // checked below: the prefix must come first
		}
		e, _ := enforcer(t, keyPolicyFile, k)
		f := newFakeSource()
		tc.setup(f)
		err := e.Check(context.Background(), tgt, "", f)
		if f.down != nil {
			if err == nil || !strings.HasPrefix(err.Error(), "RegistryUnavailable") {
				t.Errorf("%s: %v does not start with RegistryUnavailable", tc.name, err)
			}
			continue
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestEnforcerVerdicts(t *testing.T) {
	k := sigtest.NewKey(t, "ecdsa")
	tgt := testTarget()
	e, p := enforcer(t, keyPolicyFile, k)
	f := newFakeSource()
	f.addCosignTag(t, k, tgt.Digest)
	ctx := context.Background()
	if err := e.Check(ctx, tgt, "", f); err != nil {
		t.Fatal(err)
	}
	n := f.calls
	// Same policy version: a map lookup, no registry call.
	if err := e.Check(ctx, Target{Image: tgt.Image, Name: tgt.Name, Digest: tgt.Digest}, "", f); err != nil || f.calls != n {
		t.Fatalf("cached check: err %v, %d registry calls", err, f.calls-n)
	}
	// The prod namespace's own default rejects what the node accepts.
	err := e.Check(ctx, tgt, "prod", f)
	if !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), `default scope of namespace "prod"`) {
		t.Fatalf("prod: %v", err)
	}
	// A reject scope refuses without reading signatures.
	n = f.calls
	err = e.Check(ctx, Target{Image: "example.com/banned/x:1", Name: "example.com/banned/x", Digest: tgt.Digest, Manifest: testManifest}, "", f)
	if !strings.Contains(err.Error(), `scope "example.com/banned"`) || f.calls != n {
		t.Fatalf("banned: %v, %d calls", err, f.calls-n)
	}
	// A new policy (another key) is a new version: the verdict no longer
	// counts and the image is checked again, and refused.
	k2 := sigtest.NewKey(t, "ecdsa")
	k2.WritePub(t, filepath.Dir(p), "k.pub")
	pol, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	e.SetPolicy(pol)
	loads := 0
	err = e.Check(ctx, Target{Image: tgt.Image, Name: tgt.Name, Digest: tgt.Digest, ReadManifest: func() ([]byte, error) { loads++; return testManifest, nil }}, "", f)
	if err == nil || !strings.Contains(err.Error(), "wrong key") || loads != 1 {
		t.Fatalf("after the policy changed: %v (manifest read %d times)", err, loads)
	}
}

func discardLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// Verdicts outlive a restart: a verified image's next create needs no
// registry (which may be down), unless the policy changed meanwhile.
func TestEnforcerPersistsVerdicts(t *testing.T) {
	k := sigtest.NewKey(t, "ecdsa")
	tgt := testTarget()
	state := filepath.Join(t.TempDir(), "verdicts.json")
	e, p := enforcer(t, keyPolicyFile, k)
	e.Persist(state)
	f := newFakeSource()
	f.addCosignTag(t, k, tgt.Digest)
	if err := e.Check(context.Background(), tgt, "", f); err != nil {
		t.Fatal(err)
	}

	restarted := func() *Enforcer {
		pol, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		e := NewEnforcer(discardLog(), nil)
		e.SetPolicy(pol)
		e.Persist(state)
		return e
	}
	down := newFakeSource()
	down.down = fmt.Errorf("%w: connection refused", registry.ErrRegistryUnavailable)
	if err := restarted().Check(context.Background(), tgt, "", down); err != nil || down.calls != 0 {
		t.Fatalf("after a restart: %v (%d registry calls)", err, down.calls)
	}
	os.WriteFile(p, []byte(keyPolicyFile+"\n# edited\n"), 0o644)
	if err := restarted().Check(context.Background(), tgt, "", down); err == nil {
		t.Fatal("a verdict of another policy version counted")
	}
	os.WriteFile(state, []byte("{not json"), 0o600)
	if err := restarted().Check(context.Background(), tgt, "", f); err != nil {
		t.Fatalf("with a damaged verdict file: %v", err)
	}
}
