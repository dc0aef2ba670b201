package oci

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// seccompProfile resolves the CRI profile (or the deprecated path string)
// to a spec profile; nil means no filter. nil and Unconfined are the same
// (CRI-CONTRACT). caps is the process's bounding set, which decides the
// capability-conditional parts of the default and of Localhost profiles.
func seccompProfile(h Host, prof *runtimeapi.SecurityProfile, deprecatedPath string, caps []string) (*specs.LinuxSeccomp, error) {
	typ, ref := runtimeapi.SecurityProfile_Unconfined, ""
	switch {
	case prof != nil:
		typ, ref = prof.GetProfileType(), prof.GetLocalhostRef()
	case deprecatedPath == "" || deprecatedPath == "unconfined":
	case deprecatedPath == "runtime/default" || deprecatedPath == "docker/default":
		typ = runtimeapi.SecurityProfile_RuntimeDefault
	case strings.HasPrefix(deprecatedPath, "localhost/"):
		typ, ref = runtimeapi.SecurityProfile_Localhost, strings.TrimPrefix(deprecatedPath, "localhost/")
	default:
		return nil, fmt.Errorf("seccomp_profile_path %q is not runtime/default, unconfined or localhost/<path>: %w", deprecatedPath, errdefs.ErrInvalidArgument)
	}
	switch typ {
	case runtimeapi.SecurityProfile_Unconfined:
		return nil, nil
	case runtimeapi.SecurityProfile_RuntimeDefault:
		if !h.SeccompEnabled {
			return nil, nil // containerd's behaviour: the default degrades to none
		}
		return DefaultSeccompProfile(h, caps)
	case runtimeapi.SecurityProfile_Localhost:
		if !h.SeccompEnabled {
			return nil, fmt.Errorf("seccomp profile %q: seccomp is not enabled on this host: %w", ref, errdefs.ErrInvalidArgument)
		}
		return LoadSeccompProfile(h, ref, caps)
	default:
		return nil, fmt.Errorf("seccomp.profile_type %d is unknown: %w", typ, errdefs.ErrInvalidArgument)
	}
}

// maxProfileSize bounds a Localhost profile file.
const maxProfileSize = 4 << 20

var knownActions = []specs.LinuxSeccompAction{
	specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap,
	specs.ActErrno, specs.ActTrace, specs.ActAllow, specs.ActLog, specs.ActNotify,
}

// LoadSeccompProfile reads a Localhost profile (absolute path) for a
// process holding caps on host h. The file is in the format Docker,
// containerd and CRI-O read (moby's: the OCI LinuxSeccomp fields plus archMap
// and includes/excludes conditions on capabilities, architectures and the
// kernel), and its conditions are evaluated as for the default profile:
// silently applying a rule meant only for CAP_SYS_ADMIN holders to everyone
// would widen the filter.
func LoadSeccompProfile(h Host, p string, caps []string) (*specs.LinuxSeccomp, error) {
	if !filepath.IsAbs(p) {
		return nil, fmt.Errorf("seccomp localhost profile %q must be an absolute path: %w", p, errdefs.ErrInvalidArgument)
	}
	// O_NONBLOCK and the regular-file check: a FIFO or a device named as
	// the profile would otherwise block the create forever.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("seccomp localhost profile %s: %v: %w", p, err, errdefs.ErrInvalidArgument)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("seccomp localhost profile %s is not a regular file: %w", p, errdefs.ErrInvalidArgument)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxProfileSize))
	if err != nil {
		return nil, fmt.Errorf("seccomp localhost profile %s: %v: %w", p, err, errdefs.ErrInvalidArgument)
	}
	var pf mobyseccomp.Seccomp
	if err := json.Unmarshal(data, &pf); err != nil {
		return nil, fmt.Errorf("seccomp localhost profile %s is not valid JSON: %v: %w", p, err, errdefs.ErrInvalidArgument)
	}
	out, err := resolveProfile(&pf, profileConditions{caps: caps, arch: seccompArchName(), kernel: h.KernelRelease})
	if err != nil {
		return nil, fmt.Errorf("seccomp localhost profile %s: %w", p, err)
	}
	return out, nil
}

// profileConditions are what a profile's includes/excludes are evaluated
// against.
type profileConditions struct {
	caps   []string // the process's bounding set
	arch   string   // libseccomp's name of the native architecture
	kernel string   // the host's kernel release, as uname -r prints it
}

// resolveProfile turns a profile with conditional rules into the spec's
// form for one process. Rules apply as moby applies them (a rule is kept
// when every includes condition holds and no excludes condition does), so
// the default profile means here what it means under Docker and containerd.
// The result shares nothing with pf.
func resolveProfile(pf *mobyseccomp.Seccomp, c profileConditions) (*specs.LinuxSeccomp, error) {
	if !slices.Contains(knownActions, pf.DefaultAction) {
		return nil, fmt.Errorf("defaultAction %q is unknown: %w", pf.DefaultAction, errdefs.ErrInvalidArgument)
	}
	out := &specs.LinuxSeccomp{
		DefaultAction:    pf.DefaultAction,
		DefaultErrnoRet:  pf.DefaultErrnoRet,
		Architectures:    slices.Clone(pf.Architectures),
		Flags:            slices.Clone(pf.Flags),
		ListenerPath:     pf.ListenerPath,
		ListenerMetadata: pf.ListenerMetadata,
	}
	// archMap is read only when no architectures are listed (moby refuses
	// a profile with both; such files existed before, so the list wins).
	if len(out.Architectures) == 0 {
		if native, ok := seccompArches[c.arch]; ok {
			for _, a := range pf.ArchMap {
				if a.Arch == native {
					out.Architectures = append([]specs.Arch{a.Arch}, a.SubArches...)
					break
				}
			}
		}
	}
	for i, s := range pf.Syscalls {
		if s == nil {
			return nil, fmt.Errorf("syscalls[%d] is null: %w", i, errdefs.ErrInvalidArgument)
		}
		ok, err := applies(s, c)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		if !ok {
			continue
		}
		sc := s.LinuxSyscall
		sc.Names = slices.Clone(sc.Names)
		sc.Args = slices.Clone(sc.Args)
		if s.Name != "" {
			sc.Names = append(sc.Names, s.Name)
		}
		if len(sc.Names) == 0 {
			return nil, fmt.Errorf("syscalls[%d] names no system call: %w", i, errdefs.ErrInvalidArgument)
		}
		if !slices.Contains(knownActions, sc.Action) {
			return nil, fmt.Errorf("syscalls[%d].action %q is unknown: %w", i, sc.Action, errdefs.ErrInvalidArgument)
		}
		out.Syscalls = append(out.Syscalls, sc)
	}
	return out, nil
}

// applies evaluates one rule's conditions.
func applies(s *mobyseccomp.Syscall, c profileConditions) (bool, error) {
	if ex := s.Excludes; ex != nil {
		if slices.Contains(ex.Arches, c.arch) {
			return false, nil
		}
		for _, cp := range ex.Caps {
			if slices.Contains(c.caps, cp) {
				return false, nil
			}
		}
		if ex.MinKernel != nil {
			if ok, err := kernelAtLeast(c.kernel, *ex.MinKernel); err != nil || ok {
				return false, err
			}
		}
	}
	if in := s.Includes; in != nil {
		if len(in.Arches) > 0 && !slices.Contains(in.Arches, c.arch) {
			return false, nil
		}
		for _, cp := range in.Caps {
			if !slices.Contains(c.caps, cp) {
				return false, nil
			}
		}
		if in.MinKernel != nil {
			if ok, err := kernelAtLeast(c.kernel, *in.MinKernel); err != nil || !ok {
				return false, err
			}
		}
	}
	return true, nil
}

// kernelAtLeast compares a kernel release ("6.18.0-1-amd64") with a
// minKernel condition; only the version and major revision count, as in
// moby.
func kernelAtLeast(release string, min mobyseccomp.KernelVersion) (bool, error) {
	var v, major uint64
	if _, err := fmt.Sscanf(release, "%d.%d", &v, &major); err != nil {
		return false, fmt.Errorf("minKernel %s: the host's kernel release %q is not known: %v", min.String(), release, err)
	}
	return v > min.Kernel || v == min.Kernel && major >= min.Major, nil
}

// seccompArches maps libseccomp's architecture names (those of the arches
// conditions) to the spec's.
var seccompArches = map[string]specs.Arch{
	"x86": specs.ArchX86, "amd64": specs.ArchX86_64, "x32": specs.ArchX32,
	"arm": specs.ArchARM, "arm64": specs.ArchAARCH64,
	"loongarch64": specs.ArchLOONGARCH64, "ppc64le": specs.ArchPPC64LE,
	"riscv64": specs.ArchRISCV64, "s390": specs.ArchS390, "s390x": specs.ArchS390X,
	"mips64": specs.ArchMIPS64, "mipsel64": specs.ArchMIPSEL64,
}

// seccompArchName is libseccomp's name of the architecture berthd runs as.
func seccompArchName() string {
	switch runtime.GOARCH {
	case "386":
		return "x86"
	case "loong64":
		return "loongarch64"
	case "mips64le":
		return "mipsel64"
	}
	return runtime.GOARCH
}

// appArmorProfile is the AppArmor profile of a process: the runtime
// default (also when the CRI names none, as containerd and CRI-O do) is
// the profile berthd loaded at start, h.AppArmorDefault, or none where
// there is none; unconfined is none; a Localhost profile must be loaded on
// the node by its operator, and needs AppArmor on.
func appArmorProfile(h Host, prof *runtimeapi.SecurityProfile, deprecated string) (string, error) {
	name := ""
	switch {
	case prof != nil && prof.GetProfileType() == runtimeapi.SecurityProfile_Localhost:
		name = strings.TrimPrefix(prof.GetLocalhostRef(), "localhost/")
		if name == "" {
			return "", fmt.Errorf("apparmor: Localhost profile without localhost_ref: %w", errdefs.ErrInvalidArgument)
		}
	case prof != nil && prof.GetProfileType() == runtimeapi.SecurityProfile_Unconfined:
		return "", nil
	case prof != nil: // RuntimeDefault
		return h.AppArmorDefault, nil
	case deprecated == "unconfined":
		return "", nil
	case deprecated == "" || deprecated == "runtime/default":
		return h.AppArmorDefault, nil
	case strings.HasPrefix(deprecated, "localhost/"):
		name = strings.TrimPrefix(deprecated, "localhost/")
	default:
		return "", fmt.Errorf("apparmor_profile %q is not runtime/default, unconfined or localhost/<name>: %w", deprecated, errdefs.ErrInvalidArgument)
	}
	if !h.AppArmorEnabled {
		return "", fmt.Errorf("apparmor profile %q: AppArmor is not enabled on this host: %w", name, errdefs.ErrInvalidArgument)
	}
	if h.AppArmorLoaded != nil {
		loaded, err := h.AppArmorLoaded(name)
		if err != nil {
			return "", err
		}
		if !loaded {
			return "", fmt.Errorf("apparmor profile %q is not loaded on this node (apparmor_parser loads it): %w", name, errdefs.ErrFailedPrecondition)
		}
	}
	return name, nil
}
