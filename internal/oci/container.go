package oci

import (
	"fmt"
	"path"
	"syscall"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// ContainerInput is everything ContainerSpec needs; nothing else is read
// but the image's /etc/passwd and /etc/group below Rootfs, CRI host paths,
// and a Localhost seccomp profile.
type ContainerInput struct {
	ID            string
	Config        *runtimeapi.ContainerConfig
	SandboxConfig *runtimeapi.PodSandboxConfig
	SandboxID     string
	// Namespaces of the running sandbox, joined by the container.
	Namespaces SandboxNamespaces
	// TargetPIDNS is the pid namespace path of namespace_options.target_id,
	// for PID mode TARGET (kubectl debug --target).
	TargetPIDNS string
	// PodFiles are the sandbox's /etc/hosts, /etc/resolv.conf, /etc/hostname
	// and /dev/shm on the host.
	PodFiles PodFiles
	Image    ocispec.ImageConfig
	// Rootfs is the container's root filesystem, mounted unless
	// ImageFiles is set.
	Rootfs string
	// ImageFiles reads the image's /etc/passwd and /etc/group (nil: from
	// Rootfs).
	ImageFiles ImageFiles
	// ImageVolumes maps the cleaned container path of each image mount
	// (see ImageVolumes) to the host path mounted for it: the image's
	// read-only snapshot, or image_sub_path inside it.
	ImageVolumes map[string]string
	// CgroupParent overrides SandboxConfig.linux.cgroup_parent; both empty
	// means DefaultCgroupParent.
	CgroupParent string
	Host         Host
	Handler      Handler
}

// ContainerResult is the spec plus what the caller keeps for status and
// stop.
type ContainerResult struct {
	Spec *specs.Spec
	// User is the effective user, for ContainerStatus.user.
	User       User
	StopSignal syscall.Signal
	// Stdin, StdinOnce and TTY pass the CRI flags on to whoever wires the
	// container's stdio (TTY is also Spec.Process.Terminal).
	Stdin, StdinOnce, TTY bool
}

// ContainerSpec builds the OCI spec of an application container.
func ContainerSpec(in ContainerInput) (*ContainerResult, error) {
	cfg, pod := in.Config, in.SandboxConfig
	if cfg == nil {
		return nil, fmt.Errorf("container config is missing: %w", errdefs.ErrInvalidArgument)
	}
	if in.ID == "" || in.Rootfs == "" || !path.IsAbs(in.Rootfs) {
		return nil, fmt.Errorf("container id and an absolute rootfs are required: %w", errdefs.ErrInvalidArgument)
	}
	if err := checkContainerEnums(cfg); err != nil {
		return nil, err
	}
	sc := cfg.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	// api.proto: a sandbox that may run privileged containers MUST say so.
	if privileged && !pod.GetLinux().GetSecurityContext().GetPrivileged() {
		return nil, fmt.Errorf("security_context.privileged: the sandbox is not privileged: %w", errdefs.ErrInvalidArgument)
	}
	files := in.ImageFiles
	if files == nil {
		files = RootfsFiles(in.Rootfs)
	}
	user, err := resolveUser(files, containerUserRequest(sc), in.Image.User)
	if err != nil {
		return nil, err
	}
	args, err := processArgs(cfg, in.Image)
	if err != nil {
		return nil, err
	}
	hostname := pod.GetHostname()
	env, err := processEnv(cfg, in.Image, hostname)
	if err != nil {
		return nil, err
	}
	if err := checkExecSize(args, env); err != nil {
		return nil, err
	}
	cwd, err := workingDir(cfg, in.Image)
	if err != nil {
		return nil, err
	}
	stop, err := StopSignal(cfg, in.Image)
	if err != nil {
		return nil, err
	}

	newCgroupNS := in.Host.CgroupV2 && !privileged
	namespaces, err := containerNamespaces(pod, sc, in.Namespaces, in.TargetPIDNS, newCgroupNS)
	if err != nil {
		return nil, err
	}
	caps, err := capabilities(in.Host, sc, user.UID)
	if err != nil {
		return nil, err
	}
	var seccomp *specs.LinuxSeccomp
	apparmor := ""
	if !privileged {
		if seccomp, err = seccompProfile(in.Host, sc.GetSeccomp(), sc.GetSeccompProfilePath(), caps.Bounding); err != nil {
			return nil, err
		}
		if apparmor, err = appArmorProfile(in.Host, sc.GetApparmor(), sc.GetApparmorProfile()); err != nil {
			return nil, err
		}
	}

	res := cfg.GetLinux().GetResources()
	resources, err := linuxResources(in.Host, res)
	if err != nil {
		return nil, err
	}
	oom, err := oomScoreAdj(in.Host, res.GetOomScoreAdj())
	if err != nil {
		return nil, err
	}
	devices, deviceRules, err := containerDevices(in, privileged)
	if err != nil {
		return nil, err
	}
	resources.Devices = deviceRules

	mounts, rootProp, err := containerMounts(in, privileged, sc.GetReadonlyRootfs())
	if err != nil {
		return nil, err
	}
	parent := in.CgroupParent
	if parent == "" {
		parent = pod.GetLinux().GetCgroupParent()
	}
	cgPath, err := cgroupsPath(in.Host.CgroupDriver, parent, in.ID)
	if err != nil {
		return nil, err
	}
	masked, readonly := []string{}, []string{}
	if !privileged {
		masked, readonly = DefaultMaskedPaths, DefaultReadonlyPaths
		if p := sc.GetMaskedPaths(); len(p) > 0 {
			masked = p
		}
		if p := sc.GetReadonlyPaths(); len(p) > 0 {
			readonly = p
		}
	}

	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal:        cfg.GetTty(),
			User:            specs.User{UID: user.UID, GID: user.GID, AdditionalGids: user.AdditionalGids},
			Args:            args,
			Env:             env,
			Cwd:             cwd,
			Capabilities:    caps,
			NoNewPrivileges: sc.GetNoNewPrivs(),
			ApparmorProfile: apparmor,
			OOMScoreAdj:     &oom,
		},
		// No Hostname: the container joins the pod's UTS namespace, and
		// setting one would rename the whole pod.
		Root:   &specs.Root{Path: in.Rootfs, Readonly: sc.GetReadonlyRootfs()},
		Mounts: mounts,
		Linux: &specs.Linux{
			CgroupsPath:       cgPath,
			Namespaces:        namespaces,
			Resources:         resources,
			Devices:           devices,
			Seccomp:           seccomp,
			RootfsPropagation: rootProp,
			MaskedPaths:       masked,
			ReadonlyPaths:     readonly,
		},
		// Pod sysctls are not repeated here: they live in the pod's network
		// and IPC namespaces, which the sandbox already configured.
		Annotations: specAnnotations(in.Handler, map[string]string{
			AnnotationContainerType:    ContainerTypeContainer,
			AnnotationSandboxID:        in.SandboxID,
			AnnotationSandboxName:      pod.GetMetadata().GetName(),
			AnnotationSandboxNamespace: pod.GetMetadata().GetNamespace(),
			AnnotationSandboxUID:       pod.GetMetadata().GetUid(),
			AnnotationContainerName:    cfg.GetMetadata().GetName(),
		}, pod.GetAnnotations(), cfg.GetAnnotations()),
	}
	return &ContainerResult{
		Spec:       spec,
		User:       user,
		StopSignal: stop,
		Stdin:      cfg.GetStdin(),
		StdinOnce:  cfg.GetStdinOnce(),
		TTY:        cfg.GetTty(),
	}, nil
}

// containerMounts orders standard mounts, the pod's files and the CRI
// mounts; a CRI mount replaces any runtime mount at the same path.
func containerMounts(in ContainerInput, privileged, readonlyRoot bool) ([]specs.Mount, string, error) {
	idmap, err := UserNamespace(in.SandboxConfig)
	if err != nil {
		return nil, "", err
	}
	cri, rootProp, err := criMounts(in.Config.GetMounts(), in.ImageVolumes, idmap)
	if err != nil {
		return nil, "", err
	}
	taken := func(dst string) bool {
		for _, m := range cri {
			if m.Destination == dst {
				return true
			}
		}
		return false
	}
	var out []specs.Mount
	out = append(out, standardMounts(privileged, in.PodFiles.Shm == "", taken)...)
	out = append(out, podFileMounts(in.PodFiles, readonlyRoot, idmap, taken)...)
	out = append(out, cri...)
	return out, rootProp, nil
}

// containerDevices: privileged containers get every host device and an
// unrestricted device cgroup (unless the handler keeps host devices out);
// others get the CRI devices on top of the default rules.
func containerDevices(in ContainerInput, privileged bool) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	nodes, rules, err := criDevices(in.Host, in.Config.GetDevices())
	if err != nil {
		return nil, nil, err
	}
	if !privileged || in.Handler.PrivilegedWithoutHostDevices {
		return nodes, append(defaultDeviceRules(), rules...), nil
	}
	if in.Host.Devices == nil {
		return nil, nil, fmt.Errorf("privileged container: no host device lookup configured: %w", errdefs.ErrFailedPrecondition)
	}
	host, err := in.Host.Devices("/dev")
	if err != nil {
		return nil, nil, fmt.Errorf("privileged container: list host devices: %w", err)
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		seen[n.Path] = true
	}
	for _, h := range host {
		if !seen[h.Path] {
			nodes = append(nodes, h)
		}
	}
	return nodes, []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}, nil
}
