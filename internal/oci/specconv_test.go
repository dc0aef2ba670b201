//go:build cgo && seccomp

package oci

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs/validate"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// loadThroughRunc feeds a spec to the consumer: runc's conversion and its
// config validator, the checks libcontainer runs before starting anything.
func loadThroughRunc(t *testing.T, s *specs.Spec) {
	t.Helper()
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: "test", Spec: s})
	if err != nil {
		t.Fatalf("specconv: %v", err)
	}
	if err := validate.Validate(cfg); err != nil {
		t.Fatalf("validate: %v", err)
	}
}

// realNamespaces are paths that exist, so runc's validator can stat them.
var realNamespaces = SandboxNamespaces{Net: "/proc/1/ns/net", IPC: "/proc/1/ns/ipc", UTS: "/proc/1/ns/uts", PID: "/proc/1/ns/pid"}

func TestSpecsLoadThroughRunc(t *testing.T) {
	dir := t.TempDir()
	containers := map[string]func(*ContainerInput){
		"plain": nil,
		"everything": func(in *ContainerInput) {
			sc := secCtx(in)
			sc.RunAsUser = i64(1000)
			sc.ReadonlyRootfs, sc.NoNewPrivs = true, true
			sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			sc.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}}
			sc.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}
			in.Config.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/data", HostPath: dir, Readonly: true, RecursiveReadOnly: true, MountOptions: []string{"noexec", "nosuid", "nodev"}},
				{ContainerPath: "/shared", HostPath: dir, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
				{ContainerPath: "/etc/hosts", HostPath: dir},
			}
			in.Config.Devices = []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rwm"}}
			in.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{
				CpuShares: 256, CpuQuota: -1, CpuPeriod: 100000, MemoryLimitInBytes: 1 << 28, MemorySwapLimitInBytes: 1 << 28,
				CpusetCpus: "0", OomScoreAdj: 999, HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB"}},
			}
			in.Config.Tty = true
		},
		"privileged": func(in *ContainerInput) {
			secCtx(in).Privileged = true
			in.SandboxConfig.Linux.SecurityContext.Privileged = true
		},
		"host namespaces": func(in *ContainerInput) {
			in.SandboxConfig.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Network: 2, Pid: 2, Ipc: 2}
			secCtx(in).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE}
		},
		"pod user namespace": func(in *ContainerInput) {
			in.SandboxConfig = withUserns(in.SandboxConfig, podUserns(0, 200000, 65536))
			in.Namespaces.User = "/proc/1/ns/user"
			kubelet := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 200000, Length: 65536}}
			in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: dir, UidMappings: kubelet, GidMappings: kubelet}}
		},
	}
	for name, mod := range containers {
		t.Run("container/"+name, func(t *testing.T) {
			in := testInput(t)
			in.Namespaces = realNamespaces
			if mod != nil {
				mod(&in)
			}
			res, err := ContainerSpec(in)
			if err != nil {
				t.Fatal(err)
			}
			loadThroughRunc(t, res.Spec)
		})
	}
	sandboxes := map[string]func(*SandboxInput){
		"plain": nil,
		"sysctls and seccomp": func(in *SandboxInput) {
			in.NetNSPath = "" // a new netns: runc refuses net.* sysctls in the host's
			in.Config.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1"}
			in.Config.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			in.PodFiles.Shm = dir
		},
		"host network": func(in *SandboxInput) {
			in.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Network: 2, Pid: 2, Ipc: 2}
		},
		"pod user namespace": func(in *SandboxInput) {
			in.Config = withUserns(in.Config, podUserns(0, 200000, 65536))
			in.NetNSPath = ""
			in.Config.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}
			in.PodFiles.Shm = dir
		},
	}
	for name, mod := range sandboxes {
		t.Run("sandbox/"+name, func(t *testing.T) {
			in := testSandboxInput(t)
			in.NetNSPath = "/proc/1/ns/net"
			if mod != nil {
				mod(&in)
			}
			s, err := SandboxSpec(in)
			if err != nil {
				t.Fatal(err)
			}
			loadThroughRunc(t, s)
		})
	}
}

// newerThanLibseccomp are system calls of the default profile younger than
// the host's libseccomp (Debian 12's 2.5.4 stops at kernel 6.6 or so).
// libcontainer skips a name its libseccomp does not know, so on such a host
// these calls get the default action, or ENOSYS when they are numbered
// above every call libseccomp knows, as under runc and containerd on the
// same host. Anything else unknown is a typo in a profile.
var newerThanLibseccomp = []string{
	"getxattrat", "listmount", "listxattrat", "lsm_get_self_attr",
	"lsm_list_modules", "lsm_set_self_attr", "mseal", "removexattrat",
	"riscv_hwprobe", "setxattrat", "statmount", "uretprobe",
}

// TestDefaultProfileCompiles builds the RuntimeDefault filter with
// libseccomp (as runc does, minus loading it) for a few capability sets.
func TestDefaultProfileCompiles(t *testing.T) {
	for _, caps := range [][]string{nil, DefaultCaps, fakeBounding()} {
		p, err := DefaultSeccompProfile(fakeHost(), caps)
		if err != nil {
			t.Fatal(err)
		}
		unknown, err := compileSeccomp(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range unknown {
			if !slices.Contains(newerThanLibseccomp, u) {
				t.Errorf("libseccomp does not know %q: typo?", u)
			}
		}
		cfg, err := specconv.SetupSeccomp(p)
		if err != nil || cfg == nil {
			t.Fatalf("specconv.SetupSeccomp: %v", err)
		}
	}
}

func compileSeccomp(p *specs.LinuxSeccomp) (unknown []string, err error) {
	act := func(a specs.LinuxSeccompAction, errno *uint) (libseccomp.ScmpAction, error) {
		switch a {
		case specs.ActAllow:
			return libseccomp.ActAllow, nil
		case specs.ActErrno:
			ret := int16(1)
			if errno != nil {
				ret = int16(*errno)
			}
			return libseccomp.ActErrno.SetReturnCode(ret), nil
		}
		return 0, fmt.Errorf("action %s not used by the default profile", a)
	}
	def, err := act(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, err
	}
	f, err := libseccomp.NewFilter(def)
	if err != nil {
		return nil, err
	}
	defer f.Release()
	for _, a := range p.Architectures {
		name := strings.ToLower(strings.TrimPrefix(string(a), "SCMP_ARCH_"))
		arch, err := libseccomp.GetArchFromString(name)
		if err != nil {
			return nil, fmt.Errorf("arch %s: %w", a, err)
		}
		if err := f.AddArch(arch); err != nil {
			return nil, fmt.Errorf("arch %s: %w", a, err)
		}
	}
	ops := map[specs.LinuxSeccompOperator]libseccomp.ScmpCompareOp{specs.OpEqualTo: libseccomp.CompareEqual, specs.OpLessThan: libseccomp.CompareLess, specs.OpMaskedEqual: libseccomp.CompareMaskedEqual}
	for _, s := range p.Syscalls {
		a, err := act(s.Action, s.ErrnoRet)
		if err != nil {
			return nil, err
		}
		for _, name := range s.Names {
			call, err := libseccomp.GetSyscallFromName(name)
			if err != nil {
				unknown = append(unknown, name)
				continue
			}
			var conds []libseccomp.ScmpCondition
			for _, arg := range s.Args {
				vals := []uint64{arg.Value}
				if arg.Op == specs.OpMaskedEqual {
					vals = append(vals, arg.ValueTwo)
				}
				c, err := libseccomp.MakeCondition(arg.Index, ops[arg.Op], vals...)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				conds = append(conds, c)
			}
			if len(conds) == 0 {
				err = f.AddRule(call, a)
			} else {
				err = f.AddRuleConditional(call, a, conds)
			}
			if err != nil {
				return nil, fmt.Errorf("rule %s: %w", name, err)
			}
		}
	}
	out, err := os.CreateTemp("", "bpf")
	if err != nil {
		return nil, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	return unknown, f.ExportBPF(out)
}
