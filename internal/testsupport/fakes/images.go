package fakes

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/registry"
)

// Images is an image service holding images by reference, with the
// holders of each (see image.Service.Use).
type Images struct {
	R *Recorder

	mu       sync.Mutex
	byRef    map[string]image.Image
	pullable map[string]image.Image
	holders  map[string][]string // image id -> holders
}

// NewImage makes an image of one layer named after ref.
func NewImage(ref string) image.Image {
	id := digest.FromString("config " + ref)
	img := image.Image{ID: id, RepoTags: []string{ref}, RepoDigests: []string{ref + "@" + digest.FromString("manifest "+ref).String()},
		ChainIDs: []digest.Digest{digest.FromString("layer " + ref)}}
	img.Spec.Config.Entrypoint = []string{"/entrypoint"}
	return img
}

// Add makes img present under ref and its id.
func (f *Images) Add(ref string, img image.Image) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byRef == nil {
		f.byRef = map[string]image.Image{}
	}
	f.byRef[ref], f.byRef[img.ID.String()] = img, img
}

// AddPullable makes img what a Pull of ref finds in the registry.
func (f *Images) AddPullable(ref string, img image.Image) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pullable == nil {
		f.pullable = map[string]image.Image{}
	}
	f.pullable[ref] = img
}

// Holders returns the holders of image id.
func (f *Images) Holders(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.holders[id])
}

// Held reports whether any image has a holder.
func (f *Images) Held() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	held := map[string][]string{}
	for id, h := range f.holders {
		if len(h) > 0 {
			held[id] = slices.Clone(h)
		}
	}
	return held
}

// find logs the call name on ref (and args) and finds ref; it returns
// with f.mu held on success.
func (f *Images) find(name, ref string, args ...any) (image.Image, error) {
	if err := f.R.Call(name, append([]any{ref}, args...)...); err != nil {
		return image.Image{}, err
	}
	f.mu.Lock()
	img, ok := f.byRef[ref]
	if !ok {
		f.mu.Unlock()
		return image.Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	return img, nil
}

func (f *Images) Get(ref string) (image.Image, error) {
	img, err := f.find("Images.Get", ref)
	if err == nil {
		f.mu.Unlock()
	}
	return img, err
}

func (f *Images) Use(ref, holder string) (image.Image, error) {
	img, err := f.find("Images.Use", ref, holder)
	if err != nil {
		return image.Image{}, err
	}
	defer f.mu.Unlock()
	if f.holders == nil {
		f.holders = map[string][]string{}
	}
	id := img.ID.String()
	if !slices.Contains(f.holders[id], holder) {
		f.holders[id] = append(f.holders[id], holder)
	}
	return img, nil
}

func (f *Images) Release(id, holder string) error {
	if err := f.R.Call("Images.Release", id, holder); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holders[id] = slices.DeleteFunc(f.holders[id], func(h string) bool { return h == holder })
	return nil
}

func (f *Images) CheckPolicy(ctx context.Context, img image.Image, namespace string) error {
	return f.R.Call("Images.CheckPolicy", img.ID, namespace)
}

func (f *Images) Pull(ctx context.Context, ref string, auth *registry.Auth, handler string) (image.Image, error) {
	if err := f.R.Call("Images.Pull", ref); err != nil {
		return image.Image{}, err
	}
	f.mu.Lock()
	img, ok := f.pullable[ref]
	f.mu.Unlock()
	if !ok {
		return image.Image{}, fmt.Errorf("pull %q: %w", ref, errdefs.ErrNotFound)
	}
	f.Add(ref, img)
	return img, nil
}
