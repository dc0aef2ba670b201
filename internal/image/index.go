package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image/reference"
)

// index holds the image records in memory and on disk (one JSON file per
// image id in dir) with the lookup tables by tag and repo digest. It does no
// locking: Service.mu guards it.
type index struct {
	dir string
	// images are the visible records by id.
	images map[digest.Digest]*Image
	// retained are removed records still held by containers (Image.Removed).
	retained map[digest.Digest]*Image
	// refs maps every RepoTag and RepoDigest of a visible image to its id.
	refs map[string]digest.Digest
}

// lookupKey turns what a CRI caller may send into the key of refs, or an id.
// name:tag@digest is looked up by its digest: the digest is what would be
// pulled.
func lookupKey(ref string) (key string, id digest.Digest, err error) {
	if id, ok := reference.IsImageID(ref); ok {
		return "", id, nil
	}
	r, err := reference.Parse(ref)
	if err != nil {
		return "", "", err
	}
	if r.Digest() != "" {
		dr, err := r.WithDigest(r.Digest())
		if err != nil {
			return "", "", err
		}
		return dr.String(), "", nil
	}
	return r.String(), "", nil
}

func (ix *index) path(id digest.Digest) string {
	return filepath.Join(ix.dir, id.Encoded()+".json")
}

// loadIndex reads every record in dir. Unreadable records are logged and
// skipped (the start-up GC then frees what only they held); leftover temp
// files of interrupted writes are removed.
func loadIndex(dir string, log logrus.FieldLogger) (*index, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("load images: %w", err)
	}
	ix := &index{dir: dir, images: map[digest.Digest]*Image{}, retained: map[digest.Digest]*Image{}, refs: map[string]digest.Digest{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load images: %w", err)
	}
	var loaded []*Image
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if atomicfile.IsTemp(e.Name()) {
			os.Remove(p)
			continue
		}
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("load image record %s: %w", p, err)
		}
		img := &Image{}
		if err := json.Unmarshal(data, img); err != nil || img.ID.Validate() != nil || ix.path(img.ID) != p {
			log.WithField("file", p).Warnf("dropping unreadable image record: %v", err)
			os.Remove(p)
			continue
		}
		loaded = append(loaded, img)
	}
	// Oldest first, so that a tag a crash left on two records ends up on the
	// newest pull, as it was meant to.
	slices.SortFunc(loaded, func(a, b *Image) int { return a.PulledAt.Compare(b.PulledAt) })
	for _, img := range loaded {
		if img.Removed {
			ix.retained[img.ID] = img
			continue
		}
		if _, err := ix.put(img, false); err != nil {
			return nil, err
		}
	}
	return ix, nil
}

// get returns the visible record ref names (id, tag or repo digest), or an
// error wrapping errdefs.ErrNotFound, or ErrInvalidArgument for a string
// that is none of these.
func (ix *index) get(ref string) (*Image, error) {
	key, id, err := lookupKey(ref)
	if err != nil {
		return nil, err
	}
	if key != "" {
		id = ix.refs[key]
	}
	if img, ok := ix.images[id]; ok && id != "" {
		return img, nil
	}
	return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

// put adds img, or merges its tags and repo digests into the record of the
// same id, takes its tags away from any other image (a tag names one image),
// and persists every record it changed (img's own only when save: loading
// needs no rewrite). It returns the stored record.
func (ix *index) put(img *Image, save bool) (*Image, error) {
	merged := img.clone()
	if old, ok := ix.images[img.ID]; ok {
		merged.RepoTags = union(old.RepoTags, img.RepoTags)
		merged.RepoDigests = union(old.RepoDigests, img.RepoDigests)
		merged.Blobs = union(old.Blobs, img.Blobs)
	}
	if save {
		if err := atomicfile.WriteJSON(ix.path(merged.ID), &merged, 0o600); err != nil {
			return nil, fmt.Errorf("save image %s: %w", merged.ID, err)
		}
	}
	// Move refs away from other images only after the new record is durable:
	// a crash in between leaves a ref on two records, which loadIndex
	// resolves in favour of the newer one.
	for _, r := range append(slices.Clone(merged.RepoTags), merged.RepoDigests...) {
		otherID, ok := ix.refs[r]
		if !ok || otherID == merged.ID {
			continue
		}
		other := ix.images[otherID]
		updated := other.clone()
		updated.RepoTags = slices.DeleteFunc(updated.RepoTags, func(s string) bool { return s == r })
		updated.RepoDigests = slices.DeleteFunc(updated.RepoDigests, func(s string) bool { return s == r })
		if err := atomicfile.WriteJSON(ix.path(otherID), &updated, 0o600); err != nil {
			return nil, fmt.Errorf("untag image %s: %w", otherID, err)
		}
		*other = updated
	}
	ix.images[merged.ID] = &merged
	for _, r := range merged.RepoTags {
		ix.refs[r] = merged.ID
	}
	for _, r := range merged.RepoDigests {
		ix.refs[r] = merged.ID
	}
	return &merged, nil
}

// remove drops the visible record id and its refs. With holders, the
// record is kept on disk as retained (Removed) so the snapshots it holds
// survive a restart of berthd until the last holder releases it; without,
// its file is deleted.
func (ix *index) remove(id digest.Digest, holders []string) error {
	img, ok := ix.images[id]
	if !ok {
		return nil
	}
	if len(holders) > 0 {
		r := img.clone()
		r.Removed = true
		r.Holders = holders
		r.RepoTags, r.RepoDigests = nil, nil
		if err := atomicfile.WriteJSON(ix.path(id), &r, 0o600); err != nil {
			return fmt.Errorf("remove image %s: %w", id, err)
		}
		ix.retained[id] = &r
	} else if err := ix.deleteFile(id); err != nil {
		return err
	}
	for _, r := range img.RepoTags {
		delete(ix.refs, r)
	}
	for _, r := range img.RepoDigests {
		delete(ix.refs, r)
	}
	delete(ix.images, id)
	return nil
}

// setHolders persists the holders of a retained record, or deletes it when
// none is left. It reports whether the record is gone.
func (ix *index) setRetainedHolders(id digest.Digest, holders []string) (gone bool, err error) {
	r, ok := ix.retained[id]
	if !ok {
		return false, nil
	}
	if len(holders) == 0 {
		if err := ix.deleteFile(id); err != nil {
			return false, err
		}
		delete(ix.retained, id)
		return true, nil
	}
	updated := r.clone()
	updated.Holders = holders
	if err := atomicfile.WriteJSON(ix.path(id), &updated, 0o600); err != nil {
		return false, fmt.Errorf("release image %s: %w", id, err)
	}
	*r = updated
	return false, nil
}

func (ix *index) deleteFile(id digest.Digest) error {
	if err := os.Remove(ix.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete image record %s: %w", id, err)
	}
	return atomicfile.SyncDir(ix.dir)
}

// union is a ∪ b, keeping a's order and appending b's new elements.
func union[T comparable](a, b []T) []T {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}
