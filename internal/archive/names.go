package archive

import (
	"fmt"
	"path"
	"strings"

	"github.com/berth-cri/berth/internal/errdefs"
)

const (
	whiteoutPrefix = ".wh."
	// whiteoutMetaPrefix marks AUFS bookkeeping (".wh..wh.plnk", ".wh..wh.aufs"),
	// which has no overlay meaning.
	whiteoutMetaPrefix = ".wh..wh."
	opaqueMarker       = ".wh..wh..opq"
	opaqueXattr        = "trusted.overlay.opaque"
)

// cleanName turns a tar name (or hard link target) into a clean slash path
// relative to the layer root, "." for the root itself. Leading slashes are
// dropped as tar tools do; any ".." component is refused outright (GNU tar
// refuses them too) rather than cleaned, so no lexical trick can climb out.
func cleanName(name string) (string, error) {
	trimmed := strings.TrimLeft(name, "/")
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("bad name %q: %w", name, errdefs.ErrInvalidArgument)
	}
	for _, c := range strings.Split(trimmed, "/") {
		if c == ".." {
			return "", fmt.Errorf("name %q escapes the layer root: %w", name, errdefs.ErrInvalidArgument)
		}
	}
	p := path.Clean("/" + trimmed)[1:]
	if p == "" {
		return ".", nil
	}
	return p, nil
}

// entryKind says what a cleaned name means in overlay form.
type entryKind int

const (
	kindPlain    entryKind = iota
	kindWhiteout           // target is the hidden name, in the same directory
	kindOpaque             // target is the opaque directory
	kindSkip               // AUFS metadata
)

// classify looks at the whiteout conventions of the OCI layer spec. It
// returns the path the entry acts on.
func classify(p string) (entryKind, string, error) {
	if p == "." {
		return kindPlain, p, nil
	}
	dir, base := path.Split(p)
	dir = path.Clean("/" + dir)[1:]
	if dir == "" {
		dir = "."
	}
	for _, c := range strings.Split(p, "/")[:strings.Count(p, "/")] {
		if strings.HasPrefix(c, whiteoutMetaPrefix) {
			return kindSkip, "", nil
		}
		if strings.HasPrefix(c, whiteoutPrefix) {
			return 0, "", fmt.Errorf("whiteout %q used as a directory: %w", c, errdefs.ErrInvalidArgument)
		}
	}
	switch {
	case base == opaqueMarker:
		return kindOpaque, dir, nil
	case strings.HasPrefix(base, whiteoutMetaPrefix):
		return kindSkip, "", nil
	case strings.HasPrefix(base, whiteoutPrefix):
		hidden := base[len(whiteoutPrefix):]
		if hidden == "" || hidden == "." || hidden == ".." {
			return 0, "", fmt.Errorf("whiteout of %q: %w", hidden, errdefs.ErrInvalidArgument)
		}
		return kindWhiteout, path.Join(dir, hidden), nil
	}
	return kindPlain, p, nil
}
