package archive

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestApplyMaliciousLayers feeds crafted layers that try to create or change
// something outside the extraction root. Each must fail (or, where a rule
// defuses it, succeed harmlessly) and leave the tree beside the root intact.
func TestApplyMaliciousLayers(t *testing.T) {
	// Layers are built per sandbox because some point at its absolute path.
	for _, tc := range []struct {
		name    string
		layer   func(s sandbox) []ent
		wantErr bool
		// inside lists paths (relative to root) that must exist afterwards.
		inside []string
	}{
		{name: "dotdot", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{file("../outside/evil", "x")}
		}},
		{name: "dotdot nested", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{dir("a"), file("a/../../outside/evil", "x")}
		}},
		{name: "dotdot absolute", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{file("/../outside/sentinel", "x")}
		}},
		{name: "absolute name is normalised into root", inside: []string{"outside/sentinel"}, layer: func(s sandbox) []ent {
			return []ent{file(s.outside+"/sentinel", "x"), file("/outside/sentinel", "y")}
		}},
		{name: "write through relative symlink", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{symlink("l", "../outside"), file("l/sentinel", "overwritten")}
		}},
		{name: "write through absolute symlink", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{symlink("l", s.outside), file("l/evil", "x")}
		}},
		{name: "symlink to slash then dir under it", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{symlink("l", "/"), dir("l/" + s.outside[1:] + "/newdir")}
		}},
		{name: "symlink chain", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{dir("d"), symlink("d/up", ".."), symlink("a", "d/up/.."), file("a/outside/evil", "x")}
		}},
		{name: "parent through dangling symlink", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{symlink("l", s.outside+"/newdir"), file("l/x", "x")}
		}},
		{name: "in-root symlink is followed", inside: []string{"d/f"}, layer: func(s sandbox) []ent {
			return []ent{dir("d"), symlink("l", "d"), symlink("m", "./x/../l"), dir("x"), file("m/f", "x")}
		}},
		{name: "file replaces symlink, not its target", inside: []string{"l"}, layer: func(s sandbox) []ent {
			return []ent{symlink("l", s.outside+"/sentinel"), file("l", "replaced")}
		}},
		{name: "dir replaces symlink, not its target", inside: []string{"l"}, layer: func(s sandbox) []ent {
			d := dir("l")
			d.mode = 0o777
			return []ent{symlink("l", s.outside+"/dir"), d}
		}},
		{name: "hardlink to /etc/passwd", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{hardlink("pw", "/etc/passwd")}
		}},
		{name: "hardlink via dotdot", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{hardlink("s", "../outside/sentinel")}
		}},
		{name: "hardlink through absolute symlink", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{symlink("l", s.outside), hardlink("s", "l/sentinel")}
		}},
		{name: "hardlink through relative symlink", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{symlink("l", "../outside"), hardlink("s", "l/sentinel")}
		}},
		{name: "hardlink to escaping symlink then write", inside: []string{"h"}, layer: func(s sandbox) []ent {
			return []ent{symlink("l", s.outside+"/sentinel"), hardlink("h", "l"), file("h", "replaced")}
		}},
		{name: "whiteout of dotdot", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{file("dir/.wh...", "")}
		}},
		{name: "whiteout through symlink", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{symlink("l", s.outside), file("l/.wh.sentinel", "")}
		}},
		{name: "whiteout via dotdot", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{file("../outside/.wh.sentinel", "")}
		}},
		{name: "whiteout name carrying dotdot", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{file(".wh../outside/sentinel", "")}
		}},
		{name: "opaque marker in escaped dir", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{symlink("l", s.outside+"/dir"), file("l/.wh..wh..opq", "")}
		}},
		{name: "opaque marker via dotdot", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{file("../outside/dir/.wh..wh..opq", "")}
		}},
		{name: "opaque marker on symlink to slash", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{symlink("l", "/"), file("l/.wh..wh..opq", "")}
		}},
		{name: "device through symlink", wantErr: true, layer: func(s sandbox) []ent {
			return []ent{symlink("l", s.outside), {name: "l/null", typ: '3', major: 1, minor: 3}}
		}},
		{name: "dir times after planting symlink", inside: []string{"a"}, layer: func(s sandbox) []ent {
			// "a/b" is listed with times to set at the end, then "a"
			// becomes a symlink to outside: the deferred utimes must
			// not follow it.
			return []ent{dir("a"), dir("a/dir"), file("a", "x"), symlink("a", "../outside")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			before := s.outsideState(t)
			data := tarball(t, tc.layer(s)...)
			_, err := Apply(context.Background(), s.root, bytes.NewReader(data), Options{})
			if tc.wantErr && err == nil {
				t.Errorf("malicious layer applied without error")
			}
			if !tc.wantErr && err != nil {
				t.Errorf("err = %v", err)
			}
			if d := diffState(before, s.outsideState(t)); d != "" {
				t.Errorf("layer changed things outside its root:\n%s", d)
			}
			for _, p := range tc.inside {
				if _, err := os.Lstat(filepath.Join(s.root, p)); err != nil {
					t.Errorf("expected %s inside root: %v", p, err)
				}
			}
			if t.Failed() {
				out, _ := listTree(s.root)
				t.Log(out)
			}
		})
	}
}

func listTree(root string) (string, error) {
	var out string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			out += fmt.Sprintf("%v %s\n", fi.Mode(), p)
		}
		return nil
	})
	return out, err
}
