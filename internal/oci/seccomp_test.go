package oci

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"syscall"
	"testing"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
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

// verdict is what p decides for a call of name with arguments args, as
// runc's filter does: the first rule naming the call whose argument
// conditions all hold, else the default action. Enough for the operators
// the default profile uses.
func verdict(p *specs.LinuxSeccomp, name string, args ...uint64) specs.LinuxSeccompAction {
	for _, s := range p.Syscalls {
		if !slices.Contains(s.Names, name) {
			continue
		}
		match := true
		for _, a := range s.Args {
			var v uint64
			if int(a.Index) < len(args) {
				v = args[a.Index]
			}
			switch a.Op {
			case specs.OpEqualTo:
				match = match && v == a.Value
			case specs.OpLessThan:
				match = match && v < a.Value
			case specs.OpMaskedEqual:
				match = match && v&a.Value == a.ValueTwo
			default:
				panic("operator " + string(a.Op))
			}
		}
		if match {
			return s.Action
		}
	}
	return p.DefaultAction
}

func hostKernel(t *testing.T) string {
	t.Helper()
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	return unix.ByteSliceToString(uts.Release[:])
}

// TestDefaultProfileIsMobys pins the RuntimeDefault profile to moby's, as
// moby itself applies it for a process with the same bounding set on this
// host (issue 17: a hand-written default had drifted from it). A deliberate
// difference must be made in DefaultSeccompProfile, documented there, and
// expected here.
func TestDefaultProfileIsMobys(t *testing.T) {
	h := fakeHost()
	h.KernelRelease = hostKernel(t) // moby reads the running kernel's
	capSets := map[string][]string{
		"none":                   nil,
		"default":                DefaultCaps,
		"default+SYS_ADMIN":      append(slices.Clone(DefaultCaps), "CAP_SYS_ADMIN"),
		"default+SYS_PTRACE":     append(slices.Clone(DefaultCaps), "CAP_SYS_PTRACE"),
		"default-SYS_CHROOT":     without(DefaultCaps, "CAP_SYS_CHROOT"),
		"bounding (privileged)":  fakeBounding(),
		"DAC_READ_SEARCH+SYSLOG": {"CAP_DAC_READ_SEARCH", "CAP_SYSLOG"},
	}
	for name, caps := range capSets {
		t.Run(name, func(t *testing.T) {
			got, err := DefaultSeccompProfile(h, caps)
			if err != nil {
				t.Fatal(err)
			}
			want, err := mobyseccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: slices.Clone(caps)}}})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				gj, _ := json.MarshalIndent(got, "", " ")
				wj, _ := json.MarshalIndent(want, "", " ")
				t.Fatalf("RuntimeDefault differs from moby's default profile\ngot:  %.2000s\nwant: %.2000s", gj, wj)
			}
		})
	}
}

// TestDefaultSeccompProfile holds what a container may and may not do
// under RuntimeDefault, in particular the drift issue 17 found.
func TestDefaultSeccompProfile(t *testing.T) {
	const (
		afINET  = 2
		afVSOCK = 40
		afPPPOX = 24
	)
	newNet := uint64(0x40000000)
	admin := append(slices.Clone(DefaultCaps), "CAP_SYS_ADMIN")
	tests := []struct {
		name   string
		kernel string
		caps   []string
		call   string
		args   []uint64
		want   specs.LinuxSeccompAction
	}{
		{"read", "", DefaultCaps, "read", nil, specs.ActAllow},
		{"chroot with SYS_CHROOT", "", DefaultCaps, "chroot", nil, specs.ActAllow},
		{"chroot without SYS_CHROOT", "", without(DefaultCaps, "CAP_SYS_CHROOT"), "chroot", nil, specs.ActErrno},
		{"arch_prctl", "", DefaultCaps, "arch_prctl", nil, specs.ActAllow},
		{"socket AF_INET", "", DefaultCaps, "socket", []uint64{afINET}, specs.ActAllow},
		{"socket AF_PPPOX", "", DefaultCaps, "socket", []uint64{afPPPOX}, specs.ActAllow},
		// issue 17: the hand-written profile allowed host/guest sockets.
		{"socket AF_VSOCK refused", "", DefaultCaps, "socket", []uint64{afVSOCK}, specs.ActErrno},
		{"socket AF_VSOCK refused even to admins", "", fakeBounding(), "socket", []uint64{afVSOCK}, specs.ActErrno},
		// issue 17: calls the hand-written profile lacked.
		{"uretprobe", "", DefaultCaps, "uretprobe", nil, specs.ActAllow},
		{"mseal", "", DefaultCaps, "mseal", nil, specs.ActAllow},
		{"statmount", "", DefaultCaps, "statmount", nil, specs.ActAllow},
		{"name_to_handle_at", "", DefaultCaps, "name_to_handle_at", nil, specs.ActAllow},
		{"process_vm_readv on 4.8+", "", DefaultCaps, "process_vm_readv", nil, specs.ActAllow},
		{"process_vm_readv before 4.8", "4.4.0-1-amd64", DefaultCaps, "process_vm_readv", nil, specs.ActErrno},
		{"process_vm_readv before 4.8 with SYS_PTRACE", "4.4.0", append(slices.Clone(DefaultCaps), "CAP_SYS_PTRACE"), "process_vm_readv", nil, specs.ActAllow},
		{"unshare", "", DefaultCaps, "unshare", nil, specs.ActErrno},
		{"unshare with SYS_ADMIN", "", admin, "unshare", nil, specs.ActAllow},
		{"mount", "", DefaultCaps, "mount", nil, specs.ActErrno},
		{"mount with SYS_ADMIN", "", admin, "mount", nil, specs.ActAllow},
		{"clone a thread", "", DefaultCaps, "clone", []uint64{0x3d0f00}, specs.ActAllow},
		{"clone a netns", "", DefaultCaps, "clone", []uint64{newNet}, specs.ActErrno},
		{"clone a netns with SYS_ADMIN", "", admin, "clone", []uint64{newNet}, specs.ActAllow},
		{"clone3 looks absent", "", DefaultCaps, "clone3", nil, specs.ActErrno},
		{"clone3 with SYS_ADMIN", "", admin, "clone3", nil, specs.ActAllow},
		{"keyctl", "", fakeBounding(), "keyctl", nil, specs.ActErrno},
		{"io_uring_setup", "", fakeBounding(), "io_uring_setup", nil, specs.ActErrno},
		{"kexec_load", "", fakeBounding(), "kexec_load", nil, specs.ActErrno},
		{"open_by_handle_at", "", DefaultCaps, "open_by_handle_at", nil, specs.ActErrno},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := fakeHost()
			if tt.kernel != "" {
				h.KernelRelease = tt.kernel
			}
			p, err := DefaultSeccompProfile(h, tt.caps)
			if err != nil {
				t.Fatal(err)
			}
			if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != 1 {
				t.Fatalf("default action %s %v", p.DefaultAction, p.DefaultErrnoRet)
			}
			if !slices.Equal(p.Architectures, []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}) && runtime.GOARCH == "amd64" {
				t.Errorf("architectures %v", p.Architectures)
			}
			if got := verdict(p, tt.call, tt.args...); got != tt.want {
				t.Errorf("%s%v: %s, want %s", tt.call, tt.args, got, tt.want)
			}
		})
	}
	if _, err := DefaultSeccompProfile(Host{SeccompEnabled: true}, DefaultCaps); err == nil {
		t.Error("a host without a kernel release resolved the minKernel rule")
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
	// minKernel conditions were once ignored, so such rules always applied.
	kernelProfile := writeFile(t, `{"defaultAction":"SCMP_ACT_ERRNO",
		"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"5.10"}},
		{"names":["write"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"99.1"}},
		{"names":["getpid"],"action":"SCMP_ACT_ALLOW","excludes":{"minKernel":"6.0"}},
		{"names":["gettid"],"action":"SCMP_ACT_ALLOW","excludes":{"minKernel":"6.2"}},
		{"names":["arch_prctl"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64"]}},
		{"names":["modify_ldt"],"action":"SCMP_ACT_ALLOW","excludes":{"arches":["amd64"]}}]}`)
	badKernel := writeFile(t, `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"five"}}]}`)
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
		{"Localhost conditions on kernel and arch", h, prof(runtimeapi.SecurityProfile_Localhost, kernelProfile), "", func(p *specs.LinuxSeccomp) bool {
			amd64 := runtime.GOARCH == "amd64"
			return allowed(p, "read") && !allowed(p, "write") && !allowed(p, "getpid") && allowed(p, "gettid") &&
				allowed(p, "arch_prctl") == amd64 && allowed(p, "modify_ldt") != amd64
		}, nil, ""},
		{"Localhost invalid minKernel", h, prof(runtimeapi.SecurityProfile_Localhost, badKernel), "", nil, errdefs.ErrInvalidArgument, "kernel version"},
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
