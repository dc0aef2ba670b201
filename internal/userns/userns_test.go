package userns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestMappingsHostIDs(t *testing.T) {
	m := Mappings{
		UIDs: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}},
		GIDs: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 300000, Size: 10}, {ContainerID: 100, HostID: 5000, Size: 1}},
	}
	tests := []struct {
		name   string
		get    func(uint32) (uint32, bool)
		id     uint32
		want   uint32
		mapped bool
	}{
		{"uid 0", m.HostUID, 0, 200000, true},
		{"last uid", m.HostUID, 65535, 265535, true},
		{"uid past the range", m.HostUID, 65536, 0, false},
		{"gid in the second mapping", m.HostGID, 100, 5000, true},
		{"gid between mappings", m.HostGID, 50, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.get(tt.id)
			if got != tt.want || ok != tt.mapped {
				t.Fatalf("= %d, %v; want %d, %v", got, ok, tt.want, tt.mapped)
			}
		})
	}
}

// Open's namespace maps ids as asked (seen through an id-mapped mount), and
// its holder process is reaped, not left as a zombie or a traced child.
func TestOpenAndIDMapped(t *testing.T) {
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
	ns, err := Open(Mappings{UIDs: m, GIDs: m})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(dir, "f"), 7, 7); err != nil {
		t.Fatal(err)
	}
	tree, err := IDMapped(dir, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tree)
	var st unix.Stat_t
	if err := unix.Fstatat(tree, "f", &st, 0); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 200007 || st.Gid != 200007 {
		t.Errorf("owner through the id-mapped mount %d:%d, want 200007:200007", st.Uid, st.Gid)
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, f := range tasks {
		if b, _ := os.ReadFile(f); strings.TrimSpace(string(b)) != "" {
			t.Errorf("children left behind: %s: %s", f, b)
		}
	}
}

func TestOpenNeedsBothMappings(t *testing.T) {
	if _, err := Open(Mappings{UIDs: []specs.LinuxIDMapping{{HostID: 1, Size: 1}}}); err == nil {
		t.Fatal("Open without gid mappings succeeded")
	}
}
