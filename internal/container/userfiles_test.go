package container

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestUserFiles(t *testing.T) {
	var u userFiles
	reads := 0
	image := map[string][]byte{"/etc/passwd": []byte("root:x:0:0::/root:/bin/sh\n"), "/etc/group": nil}
	read := func(rel string) ([]byte, error) { reads++; return image[rel], nil }
	if u.get("img") != nil {
		t.Fatal("an unknown image has files")
	}
	rec := u.recording("img", read)
	if data, err := rec("/etc/passwd"); err != nil || !bytes.Equal(data, image["/etc/passwd"]) {
		t.Fatalf("passwd %q, %v", data, err)
	}
	if data, err := rec("/etc/group"); err != nil || data != nil {
		t.Fatalf("absent group %q, %v", data, err)
	}
	if reads != 2 {
		t.Errorf("%d reads, want each file once", reads)
	}
	kept := u.get("img")
	if kept == nil {
		t.Fatal("files not kept")
	}
	if data, err := kept("/etc/passwd"); err != nil || !bytes.Equal(data, image["/etc/passwd"]) {
		t.Fatalf("kept passwd %q, %v", data, err)
	}
	if data, err := kept("/etc/group"); err != nil || data != nil {
		t.Fatalf("kept group %q, %v (want absent)", data, err)
	}
	if _, err := kept("/etc/shadow"); err == nil {
		t.Error("a file never read was served")
	}

	// Big files and failed reads are not kept.
	big := u.recording("big", func(rel string) ([]byte, error) { return make([]byte, userFileMaxBytes+1), nil })
	if data, err := big("/etc/passwd"); err != nil || len(data) != userFileMaxBytes+1 {
		t.Fatalf("big: %d bytes, %v", len(data), err)
	}
	boom := errors.New("boom")
	failing := u.recording("failing", func(rel string) ([]byte, error) { return nil, boom })
	if _, err := failing("/etc/passwd"); !errors.Is(err, boom) {
		t.Fatalf("failing read: %v", err)
	}
	if u.get("big") != nil || u.get("failing") != nil {
		t.Error("kept what should not be")
	}

	// Only the newest images are kept.
	for i := range userFilesImages {
		u.recording(fmt.Sprint("img", i), read)("/etc/passwd")
	}
	if u.get("img") != nil || u.get("img0") == nil || u.get(fmt.Sprint("img", userFilesImages-1)) == nil {
		t.Error("eviction kept the wrong images")
	}
}
