package oci

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// allowed reports whether name is unconditionally allowed by p.
func allowed(p *specs.LinuxSeccomp, name string) bool {
	for _, s := range p.Syscalls {
		if s.Action == specs.ActAllow && len(s.Args) == 0 && slices.Contains(s.Names, name) {
			return true
		}
	}
	return false
}

func TestDefaultSeccompProfile(t *testing.T) {
	p := DefaultSeccompProfile(DefaultCaps)
	if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != 1 {
		t.Fatalf("default action %s %v", p.DefaultAction, p.DefaultErrnoRet)
	}
	for _, name := range []string{"read", "execve", "futex", "epoll_wait", "clock_gettime", "chroot", "arch_prctl"} {
		if !allowed(p, name) {
			t.Errorf("%s not allowed by default", name)
		}
	}
	for _, name := range []string{"mount", "unshare", "setns", "reboot", "init_module", "bpf", "kexec_load", "clone3", "clone", "keyctl", "add_key", "userfaultfd", "io_uring_setup", "open_by_handle_at"} {
		if allowed(p, name) {
			t.Errorf("%s allowed without its capability", name)
		}
	}
	// clone is allowed only without namespace flags; clone3 fails with ENOSYS.
	var sawClone, sawClone3 bool
	for _, s := range p.Syscalls {
		if slices.Contains(s.Names, "clone") {
			sawClone = len(s.Args) == 1 && s.Args[0].Op == specs.OpMaskedEqual && s.Args[0].Value&0x10000000 != 0 && s.Args[0].ValueTwo == 0
		}
		if slices.Contains(s.Names, "clone3") {
			sawClone3 = s.Action == specs.ActErrno && s.ErrnoRet != nil && *s.ErrnoRet == 38
		}
	}
	if !sawClone || !sawClone3 {
		t.Errorf("clone restriction missing (clone %v, clone3 %v)", sawClone, sawClone3)
	}

	admin := DefaultSeccompProfile(append(slices.Clone(DefaultCaps), "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_BOOT"))
	for _, name := range []string{"mount", "unshare", "setns", "clone", "clone3", "process_vm_readv", "reboot"} {
		if !allowed(admin, name) {
			t.Errorf("%s not allowed with its capability", name)
		}
	}
	noChroot := DefaultSeccompProfile(without(DefaultCaps, "CAP_SYS_CHROOT"))
	if allowed(noChroot, "chroot") {
		t.Error("chroot allowed without CAP_SYS_CHROOT")
	}
	if len(p.Architectures) == 0 {
		t.Error("no architectures")
	}
	// No duplicate names in the base list (a typo often shows as one).
	seen := map[string]bool{}
	for _, n := range defaultAllowed {
		if seen[n] {
			t.Errorf("duplicate %s", n)
		}
		seen[n] = true
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSeccompProfileSelection(t *testing.T) {
	h := fakeHost()
	ociProfile := writeFile(t, `{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
		"syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}`)
	dockerProfile := writeFile(t, `{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
		"archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]},{"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}],
		"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"},
		{"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
		{"name":"getpid","action":"SCMP_ACT_ALLOW"},
		{"names":["clone"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_SYS_ADMIN"]}}]}`)
	badJSON := writeFile(t, `{"defaultAction":`)
	badAction := writeFile(t, `{"defaultAction":"SCMP_ACT_MAYBE"}`)
	badRule := writeFile(t, `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"nope"}]}`)
	// A FIFO blocked the create forever (issue 9): not a regular file.
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	prof := func(typ runtimeapi.SecurityProfile_ProfileType, ref string) *runtimeapi.SecurityProfile {
		return &runtimeapi.SecurityProfile{ProfileType: typ, LocalhostRef: ref}
	}
	tests := []struct {
		name       string
		host       Host
		prof       *runtimeapi.SecurityProfile
		deprecated string
		want       func(*specs.LinuxSeccomp) bool
		err        error
		substr     string
	}{
		{"nil is unconfined", h, nil, "", func(p *specs.LinuxSeccomp) bool { return p == nil }, nil, ""},
		{"Unconfined", h, prof(runtimeapi.SecurityProfile_Unconfined, ""), "", func(p *specs.LinuxSeccomp) bool { return p == nil }, nil, ""},
		{"RuntimeDefault", h, prof(runtimeapi.SecurityProfile_RuntimeDefault, ""), "", func(p *specs.LinuxSeccomp) bool { return p != nil && allowed(p, "read") }, nil, ""},
		{"RuntimeDefault without kernel seccomp", Host{}, prof(runtimeapi.SecurityProfile_RuntimeDefault, ""), "", func(p *specs.LinuxSeccomp) bool { return p == nil }, nil, ""},
		{"deprecated runtime/default", h, nil, "runtime/default", func(p *specs.LinuxSeccomp) bool { return p != nil }, nil, ""},
		{"deprecated docker/default", h, nil, "docker/default", func(p *specs.LinuxSeccomp) bool { return p != nil }, nil, ""},
		{"deprecated unconfined", h, nil, "unconfined", func(p *specs.LinuxSeccomp) bool { return p == nil }, nil, ""},
		{"deprecated junk", h, nil, "whatever", nil, errdefs.ErrInvalidArgument, "seccomp_profile_path"},
		{"Localhost OCI format", h, prof(runtimeapi.SecurityProfile_Localhost, ociProfile), "", func(p *specs.LinuxSeccomp) bool {
			return p.DefaultAction == specs.ActErrno && allowed(p, "write") && len(p.Architectures) == 1
		}, nil, ""},
		{"deprecated localhost/", h, nil, "localhost/" + ociProfile, func(p *specs.LinuxSeccomp) bool { return allowed(p, "read") }, nil, ""},
		{"Localhost Docker format evaluates includes", h, prof(runtimeapi.SecurityProfile_Localhost, dockerProfile), "", func(p *specs.LinuxSeccomp) bool {
			return allowed(p, "read") && allowed(p, "getpid") && allowed(p, "clone") && !allowed(p, "mount") && len(p.Architectures) == 3
		}, nil, ""},
		{"Localhost missing file", h, prof(runtimeapi.SecurityProfile_Localhost, "/nonexistent/p.json"), "", nil, errdefs.ErrInvalidArgument, "/nonexistent/p.json"},
		{"Localhost relative path", h, prof(runtimeapi.SecurityProfile_Localhost, "p.json"), "", nil, errdefs.ErrInvalidArgument, "p.json"},
		{"Localhost invalid JSON", h, prof(runtimeapi.SecurityProfile_Localhost, badJSON), "", nil, errdefs.ErrInvalidArgument, badJSON},
		{"Localhost unknown default action", h, prof(runtimeapi.SecurityProfile_Localhost, badAction), "", nil, errdefs.ErrInvalidArgument, "defaultAction"},
		{"Localhost unknown rule action", h, prof(runtimeapi.SecurityProfile_Localhost, badRule), "", nil, errdefs.ErrInvalidArgument, "syscalls[0]"},
		{"unknown type", h, prof(9, ""), "", nil, errdefs.ErrInvalidArgument, "profile_type"},
		{"Localhost FIFO", h, prof(runtimeapi.SecurityProfile_Localhost, fifo), "", nil, errdefs.ErrInvalidArgument, "not a regular file"},
		{"Localhost directory", h, prof(runtimeapi.SecurityProfile_Localhost, "/"), "", nil, errdefs.ErrInvalidArgument, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := seccompProfile(tt.host, tt.prof, tt.deprecated, DefaultCaps)
			checkErr(t, err, tt.err, tt.substr)
			if err == nil && !tt.want(got) {
				t.Fatalf("profile %+v", got)
			}
		})
	}
}

func TestContainerSeccompFollowsCaps(t *testing.T) {
	in := testInput(t)
	sc := secCtx(&in)
	sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	sc.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
	res, err := ContainerSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	if !allowed(res.Spec.Linux.Seccomp, "mount") {
		t.Fatal("CAP_SYS_ADMIN granted but mount still filtered")
	}
}
