package oci

import (
	"fmt"
	"path"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// SandboxInput is everything SandboxSpec needs.
type SandboxInput struct {
	ID     string
	Config *runtimeapi.PodSandboxConfig
	// Image is the pause image's config (entrypoint /pause).
	Image ocispec.ImageConfig
	// Rootfs is the pause container's mounted root filesystem.
	Rootfs string
	// NetNSPath is the pinned network namespace; ignored for host network.
	// Empty with a pod network makes runc create an unpinned one.
	NetNSPath string
	// PodFiles: only Shm is used, mounted at /dev/shm when set.
	PodFiles PodFiles
	Host     Host
	Handler  Handler
}

// SandboxOOMScoreAdj is the pause process's wish, as kubelet's
// (PodInfraOOMAdj); Host.OOMScoreAdj clamps it.
const SandboxOOMScoreAdj = -998

// sandboxCPUShares is the pause container's own share: it sits next to the
// app containers inside the pod cgroup, which kubelet sizes.
const sandboxCPUShares = 2

// maxHostname is the kernel's limit (HOST_NAME_MAX).
const maxHostname = 64

// SandboxSpec builds the OCI spec of the pause process holding a pod's
// namespaces. Pod overhead and resources are deliberately not applied:
// kubelet sizes the pod cgroup itself (CRI-CONTRACT, Sandboxes).
func SandboxSpec(in SandboxInput) (*specs.Spec, error) {
	cfg := in.Config
	if cfg == nil {
		return nil, fmt.Errorf("sandbox config is missing: %w", errdefs.ErrInvalidArgument)
	}
	if in.ID == "" || !path.IsAbs(in.Rootfs) {
		return nil, fmt.Errorf("sandbox id and an absolute rootfs are required: %w", errdefs.ErrInvalidArgument)
	}
	if err := checkSandboxEnums(cfg); err != nil {
		return nil, err
	}
	sc := cfg.GetLinux().GetSecurityContext()
	ns := sc.GetNamespaceOptions()
	hostNet := ns.GetNetwork() == runtimeapi.NamespaceMode_NODE
	hostIPC := ns.GetIpc() == runtimeapi.NamespaceMode_NODE

	args := append(append([]string{}, in.Image.Entrypoint...), in.Image.Cmd...)
	if len(args) == 0 || args[0] == "" {
		return nil, fmt.Errorf("sandbox image has neither entrypoint nor cmd: %w", errdefs.ErrInvalidArgument)
	}
	env, err := processEnv(nil, in.Image, "")
	if err != nil {
		return nil, err
	}
	cwd, err := workingDir(nil, in.Image)
	if err != nil {
		return nil, err
	}
	user, err := resolveUser(RootfsFiles(in.Rootfs), userRequest{
		runAsUser:    sc.GetRunAsUser(),
		runAsGroup:   sc.GetRunAsGroup(),
		supplemental: sc.GetSupplementalGroups(),
		strict:       sc.GetSupplementalGroupsPolicy() == runtimeapi.SupplementalGroupsPolicy_Strict,
	}, in.Image.User)
	if err != nil {
		return nil, err
	}
	idmap, err := UserNamespace(cfg)
	if err != nil {
		return nil, err
	}
	namespaces := sandboxNamespaces(cfg, in.NetNSPath, idmap)
	hostname := ""
	if !hostNet {
		// With host network the pod shares the host's UTS namespace and
		// keeps the node's name.
		hostname = cfg.GetHostname()
		if len(hostname) > maxHostname || hasNUL(hostname) {
			return nil, fmt.Errorf("hostname %q is longer than %d bytes or contains NUL: %w", hostname, maxHostname, errdefs.ErrInvalidArgument)
		}
	}
	sysctls := cfg.GetLinux().GetSysctls()
	if err := checkSysctls(sysctls, hostNet, hostIPC); err != nil {
		return nil, fmt.Errorf("linux.sysctls: %w", err)
	}
	// The pause needs no capability at all, so the default profile is the
	// one for an empty set (no capability-conditional groups).
	seccomp, err := seccompProfile(in.Host, sc.GetSeccomp(), sc.GetSeccompProfilePath(), nil)
	if err != nil {
		return nil, err
	}
	apparmor, err := appArmorProfile(in.Host, sc.GetApparmor(), "")
	if err != nil {
		return nil, err
	}
	oom, _ := oomScoreAdj(in.Host, SandboxOOMScoreAdj)
	cgPath, err := cgroupsPath(in.Host.CgroupDriver, cfg.GetLinux().GetCgroupParent(), in.ID)
	if err != nil {
		return nil, err
	}

	noTaken := func(string) bool { return false }
	mounts := standardMounts(false, false, func(dst string) bool { return dst == "/sys/fs/cgroup" })
	if in.PodFiles.Shm != "" {
		mounts = append(mounts, podFileMounts(PodFiles{Shm: in.PodFiles.Shm}, false, idmap, noTaken)...)
	}
	shares := uint64(sandboxCPUShares)
	var sysctl map[string]string
	if len(sysctls) > 0 {
		sysctl = make(map[string]string, len(sysctls))
		for k, v := range sysctls {
			sysctl[k] = v
		}
	}
	empty := []string{}
	var uidMap, gidMap []specs.LinuxIDMapping
	if idmap != nil {
		uidMap, gidMap = idmap.UIDs, idmap.GIDs
	}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User:            specs.User{UID: user.UID, GID: user.GID, AdditionalGids: user.AdditionalGids},
			Args:            args,
			Env:             env,
			Cwd:             cwd,
			Capabilities:    &specs.LinuxCapabilities{Bounding: empty, Effective: empty, Permitted: empty, Inheritable: empty, Ambient: empty},
			NoNewPrivileges: true,
			ApparmorProfile: apparmor,
			OOMScoreAdj:     &oom,
		},
		Root:     &specs.Root{Path: in.Rootfs, Readonly: sc.GetReadonlyRootfs()},
		Hostname: hostname,
		Mounts:   mounts,
		Linux: &specs.Linux{
			CgroupsPath: cgPath,
			Namespaces:  namespaces,
			UIDMappings: uidMap,
			GIDMappings: gidMap,
			Sysctl:      sysctl,
			Resources: &specs.LinuxResources{
				Devices: defaultDeviceRules(),
				CPU:     &specs.LinuxCPU{Shares: &shares},
			},
			Seccomp:       seccomp,
			MaskedPaths:   DefaultMaskedPaths,
			ReadonlyPaths: DefaultReadonlyPaths,
		},
		Annotations: specAnnotations(in.Handler, map[string]string{
			AnnotationContainerType:    ContainerTypeSandbox,
			AnnotationSandboxID:        in.ID,
			AnnotationSandboxName:      cfg.GetMetadata().GetName(),
			AnnotationSandboxNamespace: cfg.GetMetadata().GetNamespace(),
			AnnotationSandboxUID:       cfg.GetMetadata().GetUid(),
			AnnotationSandboxLogDir:    cfg.GetLogDirectory(),
		}, cfg.GetAnnotations()),
	}, nil
}
