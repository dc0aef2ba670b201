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
		return DefaultSeccompProfile(caps), nil
	case runtimeapi.SecurityProfile_Localhost:
		if !h.SeccompEnabled {
			return nil, fmt.Errorf("seccomp profile %q: seccomp is not enabled on this host: %w", ref, errdefs.ErrInvalidArgument)
		}
		return LoadSeccompProfile(ref, caps)
	default:
		return nil, fmt.Errorf("seccomp.profile_type %d is unknown: %w", typ, errdefs.ErrInvalidArgument)
	}
}

// maxProfileSize bounds a Localhost profile file.
const maxProfileSize = 4 << 20

// profileFile is the on-disk profile format: the OCI LinuxSeccomp fields
// plus the Docker/containerd extensions found in profiles people copy
// (archMap, includes/excludes by capability or architecture). Conditional
// rules are evaluated here, because silently applying a rule meant only for
// CAP_SYS_ADMIN holders to everyone would widen the filter.
type profileFile struct {
	DefaultAction    specs.LinuxSeccompAction `json:"defaultAction"`
	DefaultErrnoRet  *uint                    `json:"defaultErrnoRet,omitempty"`
	Architectures    []specs.Arch             `json:"architectures"`
	ArchMap          []archMapEntry           `json:"archMap"`
	Flags            []specs.LinuxSeccompFlag `json:"flags"`
	ListenerPath     string                   `json:"listenerPath"`
	ListenerMetadata string                   `json:"listenerMetadata"`
	Syscalls         []profileSyscall         `json:"syscalls"`
}

type archMapEntry struct {
	Arch             specs.Arch   `json:"architecture"`
	SubArchitectures []specs.Arch `json:"subArchitectures"`
}

type profileSyscall struct {
	specs.LinuxSyscall
	Name     string      `json:"name"` // pre-"names" Docker profiles
	Includes *conditions `json:"includes"`
	Excludes *conditions `json:"excludes"`
}

type conditions struct {
	Caps   []string `json:"caps"`
	Arches []string `json:"arches"`
}

var knownActions = []specs.LinuxSeccompAction{
	specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap,
	specs.ActErrno, specs.ActTrace, specs.ActAllow, specs.ActLog, specs.ActNotify,
}

// LoadSeccompProfile reads a Localhost profile (absolute path) for a
// process holding caps.
func LoadSeccompProfile(p string, caps []string) (*specs.LinuxSeccomp, error) {
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
	var pf profileFile
	if err := json.Unmarshal(data, &pf); err != nil {
		return nil, fmt.Errorf("seccomp localhost profile %s is not valid JSON: %v: %w", p, err, errdefs.ErrInvalidArgument)
	}
	out, err := pf.resolve(caps)
	if err != nil {
		return nil, fmt.Errorf("seccomp localhost profile %s: %w", p, err)
	}
	return out, nil
}

func (pf profileFile) resolve(caps []string) (*specs.LinuxSeccomp, error) {
	if !slices.Contains(knownActions, pf.DefaultAction) {
		return nil, fmt.Errorf("defaultAction %q is unknown: %w", pf.DefaultAction, errdefs.ErrInvalidArgument)
	}
	out := &specs.LinuxSeccomp{
		DefaultAction:    pf.DefaultAction,
		DefaultErrnoRet:  pf.DefaultErrnoRet,
		Architectures:    pf.Architectures,
		Flags:            pf.Flags,
		ListenerPath:     pf.ListenerPath,
		ListenerMetadata: pf.ListenerMetadata,
	}
	if len(out.Architectures) == 0 {
		native := nativeArch()
		for _, a := range pf.ArchMap {
			if a.Arch == native {
				out.Architectures = append([]specs.Arch{a.Arch}, a.SubArchitectures...)
			}
		}
	}
	for i, s := range pf.Syscalls {
		if !s.applies(caps) {
			continue
		}
		sc := s.LinuxSyscall
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

func (s profileSyscall) applies(caps []string) bool {
	arch := runtime.GOARCH
	if in := s.Includes; in != nil {
		for _, c := range in.Caps {
			if !slices.Contains(caps, c) {
				return false
			}
		}
		if len(in.Arches) > 0 && !slices.Contains(in.Arches, arch) {
			return false
		}
	}
	if ex := s.Excludes; ex != nil {
		for _, c := range ex.Caps {
			if slices.Contains(caps, c) {
				return false
			}
		}
		if slices.Contains(ex.Arches, arch) {
			return false
		}
	}
	return true
}

func nativeArch() specs.Arch {
	switch runtime.GOARCH {
	case "amd64":
		return specs.ArchX86_64
	case "arm64":
		return specs.ArchAARCH64
	case "386":
		return specs.ArchX86
	case "arm":
		return specs.ArchARM
	case "ppc64le":
		return specs.ArchPPC64LE
	case "s390x":
		return specs.ArchS390X
	case "riscv64":
		return specs.ArchRISCV64
	}
	return ""
}

// appArmorProfile: this package ships no AppArmor profile, so the runtime
// default and unconfined are the same (none); a named profile needs
// AppArmor on the host.
func appArmorProfile(h Host, prof *runtimeapi.SecurityProfile, deprecated string) (string, error) {
	name := ""
	switch {
	case prof != nil && prof.GetProfileType() == runtimeapi.SecurityProfile_Localhost:
		name = strings.TrimPrefix(prof.GetLocalhostRef(), "localhost/")
		if name == "" {
			return "", fmt.Errorf("apparmor: Localhost profile without localhost_ref: %w", errdefs.ErrInvalidArgument)
		}
	case prof != nil:
		return "", nil
	case deprecated == "" || deprecated == "runtime/default" || deprecated == "unconfined":
		return "", nil
	case strings.HasPrefix(deprecated, "localhost/"):
		name = strings.TrimPrefix(deprecated, "localhost/")
	default:
		return "", fmt.Errorf("apparmor_profile %q is not runtime/default, unconfined or localhost/<name>: %w", deprecated, errdefs.ErrInvalidArgument)
	}
	if !h.AppArmorEnabled {
		return "", fmt.Errorf("apparmor profile %q: AppArmor is not enabled on this host: %w", name, errdefs.ErrInvalidArgument)
	}
	return name, nil
}
