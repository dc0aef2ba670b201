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
// locking: Service.mu guards the maps. A change is planned (plan*: what to
// write), persisted (persist: the disk only, run without Service.mu, so
// that a slow fsync holds up no reader) and applied (apply*: memory).
type index struct {
	dir string
	// write persists one record durably (atomicfile.WriteJSON; a test's
	// may stall like a disk).
	write func(path string, v any) error
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
	ix := &index{dir: dir, write: func(p string, v any) error { return atomicfile.WriteJSON(p, v, 0o600) }, images: map[digest.Digest]*Image{}, retained: map[digest.Digest]*Image{}, refs: map[string]digest.Digest{}}
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
		// A ref a crash left on two records goes to the newer: the older
		// record is rewritten without it.
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

// recordOp is one write of a change: the record of id, or its deletion
// (rec nil). The ops of a change are persisted in order.
type recordOp struct {
	id  digest.Digest
	rec *Image
}

// putPlan is what adding an image changes: its merged record, and the
// other images that lose a tag or repo digest to it.
type putPlan struct {
	merged   Image
	untagged []Image
}

// ops are the writes of p: the new record first, so that a crash before
// the others are untagged leaves a ref on two records, which loadIndex
// resolves in favour of the newer one.
func (p *putPlan) ops() []recordOp {
	ops := []recordOp{{p.merged.ID, &p.merged}}
	for i := range p.untagged {
		ops = append(ops, recordOp{p.untagged[i].ID, &p.untagged[i]})
	}
	return ops
}

// planPut plans adding img, or merging its tags and repo digests into the
// record of the same id; its tags are taken from any other image (a tag
// names one image).
func (ix *index) planPut(img *Image) *putPlan {
	p := &putPlan{merged: img.clone()}
	if old, ok := ix.images[img.ID]; ok {
		p.merged.RepoTags = union(old.RepoTags, img.RepoTags)
		p.merged.RepoDigests = union(old.RepoDigests, img.RepoDigests)
		p.merged.Blobs = union(old.Blobs, img.Blobs)
	}
	changed := map[digest.Digest]int{} // index in p.untagged
	for _, r := range append(slices.Clone(p.merged.RepoTags), p.merged.RepoDigests...) {
		otherID, ok := ix.refs[r]
		if !ok || otherID == p.merged.ID {
			continue
		}
		i, seen := changed[otherID]
		if !seen {
			i = len(p.untagged)
			changed[otherID] = i
			p.untagged = append(p.untagged, ix.images[otherID].clone())
		}
		u := &p.untagged[i]
		u.RepoTags = slices.DeleteFunc(u.RepoTags, func(s string) bool { return s == r })
		u.RepoDigests = slices.DeleteFunc(u.RepoDigests, func(s string) bool { return s == r })
	}
	return p
}

// applyPut makes p the in-memory state and returns the stored record.
func (ix *index) applyPut(p *putPlan) *Image {
	for _, u := range p.untagged {
		*ix.images[u.ID] = u
	}
	merged := p.merged
	ix.images[merged.ID] = &merged
	for _, r := range merged.RepoTags {
		ix.refs[r] = merged.ID
	}
	for _, r := range merged.RepoDigests {
		ix.refs[r] = merged.ID
	}
	return &merged
}

// put is planPut, persist and applyPut at once (save false: no write of
// img's own record), for an index nothing else uses meanwhile.
func (ix *index) put(img *Image, save bool) (*Image, error) {
	p := ix.planPut(img)
	ops := p.ops()
	if !save {
		ops = ops[1:]
	}
	if err := ix.persist(ops); err != nil {
		return nil, err
	}
	return ix.applyPut(p), nil
}

// persist writes ops in order. It touches only the disk: callers run it
// without Service.mu, holding Service.commitMu so that no other change
// is planned meanwhile.
func (ix *index) persist(ops []recordOp) error {
	for _, op := range ops {
		if op.rec == nil {
			if err := ix.deleteFile(op.id); err != nil {
				return err
			}
			continue
		}
		if err := ix.write(ix.path(op.id), op.rec); err != nil {
			return fmt.Errorf("save image record %s: %w", op.id, err)
		}
	}
	return nil
}

// planRemove plans dropping the visible record id. With holders, the
// record is kept on disk as retained (Removed) so the snapshots it holds
// survive a restart of berthd until the last holder releases it; without,
// its file is deleted.
func (ix *index) planRemove(id digest.Digest, holders []string) []recordOp {
	img, ok := ix.images[id]
	if !ok {
		return nil
	}
	if len(holders) == 0 {
		return []recordOp{{id: id}}
	}
	r := img.clone()
	r.Removed = true
	r.Holders = holders
	r.RepoTags, r.RepoDigests = nil, nil
	return []recordOp{{id, &r}}
}

// applyRemove drops the visible record id and its refs from memory; ops
// are planRemove's.
func (ix *index) applyRemove(id digest.Digest, ops []recordOp) {
	img, ok := ix.images[id]
	if !ok {
		return
	}
	if len(ops) == 1 && ops[0].rec != nil {
		ix.retained[id] = ops[0].rec
	}
	for _, r := range img.RepoTags {
		delete(ix.refs, r)
	}
	for _, r := range img.RepoDigests {
		delete(ix.refs, r)
	}
	delete(ix.images, id)
}

// remove is planRemove, persist and applyRemove at once, for start-up
// recovery, which runs before anything else can use the index.
func (ix *index) remove(id digest.Digest, holders []string) error {
	ops := ix.planRemove(id, holders)
	if err := ix.persist(ops); err != nil {
		return fmt.Errorf("remove image %s: %w", id, err)
	}
	ix.applyRemove(id, ops)
	return nil
}

// planRetainedHolders plans recording the holders of a retained record, or
// deleting it when none is left.
func (ix *index) planRetainedHolders(id digest.Digest, holders []string) []recordOp {
	r, ok := ix.retained[id]
	if !ok {
		return nil
	}
	if len(holders) == 0 {
		return []recordOp{{id: id}}
	}
	updated := r.clone()
	updated.Holders = holders
	return []recordOp{{id, &updated}}
}

// applyRetainedHolders applies planRetainedHolders' ops and reports
// whether the record is gone.
func (ix *index) applyRetainedHolders(id digest.Digest, ops []recordOp) (gone bool) {
	if len(ops) == 0 {
		return false
	}
	if ops[0].rec == nil {
		delete(ix.retained, id)
		return true
	}
	ix.retained[id] = ops[0].rec
	return false
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
