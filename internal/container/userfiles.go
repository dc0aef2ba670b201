package container

import (
	"fmt"
	"sync"

	"github.com/berth-cri/berth/internal/oci"
)

// userFiles keeps each image's /etc/passwd and /etc/group, read from its
// first container's freshly mounted rootfs (before anything ran in it: the
// image's own files). An image's layers never change (its id is the digest
// of its config, which names them), so a later container of the image has
// its spec built without waiting for its rootfs (see setUp).
type userFiles struct {
	mu      sync.Mutex
	byImage map[string]map[string][]byte // image id → path → content (nil: absent)
	order   []string                     // image ids, oldest first
}

// userFilePaths are the files the spec needs from the image.
var userFilePaths = []string{"/etc/passwd", "/etc/group"}

const (
	userFilesImages  = 64        // images remembered
	userFileMaxBytes = 256 << 10 // a bigger file is read from each rootfs
)

// get returns image's files if they are known, else nil.
func (u *userFiles) get(image string) oci.ImageFiles {
	u.mu.Lock()
	files, ok := u.byImage[image]
	u.mu.Unlock()
	if !ok {
		return nil
	}
	return func(rel string) ([]byte, error) {
		data, ok := files[rel]
		if !ok {
			return nil, fmt.Errorf("image file %s: not kept", rel)
		}
		return data, nil
	}
}

// recording reads image's files through read (its mounted rootfs) and
// keeps them for the next containers of the image.
func (u *userFiles) recording(image string, read oci.ImageFiles) oci.ImageFiles {
	return func(rel string) ([]byte, error) {
		if kept := u.get(image); kept != nil {
			if data, err := kept(rel); err == nil {
				return data, nil
			}
		}
		files := map[string][]byte{}
		for _, p := range userFilePaths {
			d, err := read(p)
			if err != nil || len(d) > userFileMaxBytes {
				return read(rel) // not kept: read as it comes
			}
			files[p] = d
		}
		u.keep(image, files)
		if data, ok := files[rel]; ok {
			return data, nil
		}
		return read(rel)
	}
}

func (u *userFiles) keep(image string, files map[string][]byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byImage == nil {
		u.byImage = map[string]map[string][]byte{}
	}
	if _, ok := u.byImage[image]; ok {
		return
	}
	u.byImage[image] = files
	u.order = append(u.order, image)
	if len(u.order) > userFilesImages {
		delete(u.byImage, u.order[0])
		u.order = u.order[1:]
	}
}
