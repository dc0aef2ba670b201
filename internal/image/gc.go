package image

import (
	"errors"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/berth-cri/berth/internal/content"
	"github.com/berth-cri/berth/internal/errdefs"
)

// Snapshots and blobs share one namespace of keys in leases and deleting.
func snapKey(d digest.Digest) string { return "snap:" + d.String() }
func blobKey(d digest.Digest) string { return "blob:" + d.String() }

// referenced is every key some record (visible or retained) or pull in
// progress needs; s.mu is held.
func (s *Service) referenced() map[string]bool {
	refs := map[string]bool{}
	for _, m := range []map[digest.Digest]*Image{s.ix.images, s.ix.retained} {
		for _, img := range m {
			for _, c := range img.ChainIDs {
				refs[snapKey(c)] = true
			}
			for _, b := range img.Blobs {
				refs[blobKey(b)] = true
			}
		}
	}
	for k := range s.leases {
		refs[k] = true
	}
	return refs
}

// unreferenced picks, among the given snapshots and blobs, those nothing
// references any more, and marks them as being deleted so that a pull
// needing one waits and re-creates it. s.mu is held; the caller passes the
// result to collect after unlocking.
func (s *Service) unreferenced(chains, blobs []digest.Digest) []string {
	refs := s.referenced()
	var victims []string
	add := func(k string) {
		if refs[k] || s.deleting[k] != nil {
			return
		}
		s.deleting[k] = make(chan struct{})
		victims = append(victims, k)
	}
	for _, c := range chains {
		add(snapKey(c))
	}
	for _, b := range blobs {
		add(blobKey(b))
	}
	return victims
}

// collect deletes the victims unreferenced chose, without s.mu (removing a
// snapshot tree takes a while), then releases waiting pulls.
func (s *Service) collect(victims []string) error {
	var errs []error
	for _, k := range victims {
		var err error
		if d, ok := cutPrefix(k, "snap:"); ok {
			err = s.snapshots.Remove(d)
		} else if d, ok := cutPrefix(k, "blob:"); ok {
			err = s.content.Delete(d)
		}
		if err != nil {
			errs = append(errs, err)
		}
		s.mu.Lock()
		close(s.deleting[k])
		delete(s.deleting, k)
		s.mu.Unlock()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("free image data: %w", err)
	}
	return nil
}

func cutPrefix(k, prefix string) (digest.Digest, bool) {
	if len(k) > len(prefix) && k[:len(prefix)] == prefix {
		return digest.Digest(k[len(prefix):]), true
	}
	return "", false
}

// lease marks the snapshots and blobs a pull will rely on, so no GC deletes
// them before the pull's record is saved, and waits for deletions of any of
// them already under way (after which the pull sees them absent and fetches
// them again). The returned function ends the lease; calling it again does
// nothing.
func (s *Service) lease(chains, blobs []digest.Digest) func() {
	var keys []string
	for _, c := range chains {
		keys = append(keys, snapKey(c))
	}
	for _, b := range blobs {
		keys = append(keys, blobKey(b))
	}
	s.mu.Lock()
	var wait []chan struct{}
	for _, k := range keys {
		s.leases[k]++
		if ch := s.deleting[k]; ch != nil {
			wait = append(wait, ch)
		}
	}
	s.mu.Unlock()
	for _, ch := range wait {
		<-ch
	}
	var once sync.Once
	return func() { once.Do(func() { s.unlease(keys) }) }
}

func (s *Service) unlease(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if s.leases[k]--; s.leases[k] <= 0 {
			delete(s.leases, k)
		}
	}
}

// recover runs once in New, before anything else can use s: it drops
// records whose config blob or snapshots are gone (a crash during GC, or
// hand-deleted data; the image is pulled again when needed) and deletes
// the snapshots and blobs that no record references (a crash between a
// download and its record, or during RemoveImage).
func (s *Service) recover() error {
	s.dropDamagedBlobs()
	for _, m := range []map[digest.Digest]*Image{s.ix.images, s.ix.retained} {
		for id, img := range m {
			missing := ""
			if !s.content.Exists(img.ID) {
				missing = "config blob " + img.ID.String()
			}
			for _, c := range img.ChainIDs {
				if missing == "" && !s.snapshots.Exists(c) {
					missing = "layer snapshot " + c.String()
				}
			}
			if missing == "" {
				continue
			}
			s.log.WithField("image", id).Warnf("dropping image record: its %s is missing", missing)
			if img.Removed {
				delete(s.ix.retained, id)
				if err := s.ix.deleteFile(id); err != nil {
					return err
				}
			} else if err := s.ix.remove(id, nil); err != nil {
				return err
			}
		}
	}
	refs := s.referenced()
	chains, err := s.snapshots.List()
	if err != nil {
		return fmt.Errorf("recover images: %w", err)
	}
	for _, c := range chains {
		if refs[snapKey(c)] {
			continue
		}
		s.log.WithField("snapshot", c).Info("removing unreferenced layer snapshot")
		if err := s.snapshots.Remove(c); err != nil {
			return fmt.Errorf("recover images: %w", err)
		}
	}
	var orphans []digest.Digest
	err = s.content.Walk(func(i content.Info) error {
		if !refs[blobKey(i.Digest)] {
			orphans = append(orphans, i.Digest)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recover images: %w", err)
	}
	for _, b := range orphans {
		s.log.WithField("blob", b).Info("removing unreferenced blob")
		if err := s.content.Delete(b); err != nil {
			return fmt.Errorf("recover images: %w", err)
		}
	}
	return nil
}

// dropDamagedBlobs verifies every blob of the content store (manifests and
// configs only, a few KiB each: layers are not kept) and deletes those whose
// content no longer matches their digest, a file truncated by a disk error
// or edited by hand. Start-up then drops the records whose config is gone,
// and a pull fetches the blobs again. Nothing here stops berthd starting.
func (s *Service) dropDamagedBlobs() {
	var bad []digest.Digest
	err := s.content.Walk(func(i content.Info) error {
		if err := s.content.Verify(i.Digest); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			s.log.WithField("blob", i.Digest).Warnf("removing damaged blob: %v", err)
			bad = append(bad, i.Digest)
		}
		return nil
	})
	if err != nil {
		s.log.WithError(err).Warn("verify content store")
	}
	for _, d := range bad {
		if err := s.content.Delete(d); err != nil {
			s.log.WithField("blob", d).Warnf("cannot remove damaged blob: %v", err)
		}
	}
}
