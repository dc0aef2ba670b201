package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzDepth is how deep the root sits below the sandbox base. Together with
// at most fuzzMaxLines entries of at most one ".." each, it bounds how far a
// buggy applier could climb: any escape lands inside the sandbox, where the
// check sees it, and never reaches the host's own files.
const (
	fuzzDepth    = 10
	fuzzMaxLines = 8
)

// decodeFuzzLayer turns fuzz input into tar entries. Each line is
// "<type> <name> <arg>": f file (arg = content), d dir, l symlink (arg =
// target), h hard link (arg = target), c char device, p fifo. A text format
// lets the mutator produce names full of "/", ".", ".." and ".wh." that a
// byte-level tar mutation would only ever turn into checksum errors.
// Absolute symlink targets are re-rooted at the sandbox base so that even a
// broken applier cannot reach the host's "/".
func decodeFuzzLayer(data []byte, base string) []ent {
	var ents []ent
	for i, line := range strings.Split(string(data), "\n") {
		if i == fuzzMaxLines || len(line) < 2 {
			break
		}
		fields := strings.SplitN(line[1:], " ", 3)
		for len(fields) < 3 {
			fields = append(fields, "")
		}
		name, arg := fields[1], fields[2]
		if name == "" || strings.Count(name, "..") > 1 || strings.Count(arg, "..") > 1 {
			continue
		}
		e := ent{name: name, mode: 0o755}
		switch line[0] {
		case 'd':
			e.typ = tar.TypeDir
		case 'l', 'h':
			e.typ = tar.TypeSymlink
			if line[0] == 'h' {
				e.typ = tar.TypeLink
			}
			e.link = arg
			if strings.HasPrefix(arg, "/") && e.typ == tar.TypeSymlink {
				e.link = base + arg
			}
			if e.link == "" {
				continue
			}
		case 'c':
			e.typ, e.major, e.minor = tar.TypeChar, 1, 3
		case 'p':
			e.typ = tar.TypeFifo
		default:
			e.typ, e.body, e.mode = tar.TypeReg, arg, 0o4755
		}
		if strings.HasSuffix(e.name, "/") && e.typ != tar.TypeDir {
			continue // tar.Writer refuses these
		}
		ents = append(ents, e)
	}
	return ents
}

func FuzzApply(f *testing.F) {
	for _, seed := range []string{
		"d a\nf a/b hello\nl c a\nh d a/b",
		"l l ..\nf l/sentinel x",
		"l l /\nd l/outside/new",
		"l l /outside\nh x l/sentinel",
		"f .wh...\nf d/.wh..wh..opq",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		s.root = filepath.Join(append([]string{s.base}, strings.Split(strings.Repeat("w/", fuzzDepth)+"root", "/")...)...)
		if err := os.MkdirAll(s.root, 0o755); err != nil {
			t.Fatal(err)
		}
		ents := decodeFuzzLayer(data, s.base)
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range ents {
			h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode,
				Size: int64(len(e.body)), Devmajor: e.major, Devminor: e.minor, ModTime: testTime}
			if e.typ != tar.TypeReg {
				h.Size = 0
			}
			if tw.WriteHeader(h) != nil {
				return // a name tar cannot encode
			}
			if e.typ == tar.TypeReg {
				tw.Write([]byte(e.body))
			}
		}
		tw.Close()

		// The outside state is everything under base except the root, so
		// take it relative to the deep root.
		before := s.outsideState(t)
		Apply(context.Background(), s.root, &buf, Options{MaxBytes: 1 << 20})
		if d := diffState(before, s.outsideState(t)); d != "" {
			t.Fatalf("layer %q changed things outside its root:\n%s", data, d)
		}
	})
}
