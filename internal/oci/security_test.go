package oci

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestCapabilities(t *testing.T) {
	h := fakeHost()
	caps := func(add, drop, amb []string) *runtimeapi.LinuxContainerSecurityContext {
		return &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: add, DropCapabilities: drop, AddAmbientCapabilities: amb}}
	}
	tests := []struct {
		name      string
		sc        *runtimeapi.LinuxContainerSecurityContext
		uid       uint32
		bounding  []string
		effective []string
		ambient   []string
		err       error
	}{
		{"default set", nil, 0, DefaultCaps, DefaultCaps, []string{}, nil},
		{"add with and without prefix", caps([]string{"NET_ADMIN", "cap_sys_time"}, nil, nil), 0,
			append(slices.Clone(DefaultCaps), "CAP_NET_ADMIN", "CAP_SYS_TIME"), append(slices.Clone(DefaultCaps), "CAP_NET_ADMIN", "CAP_SYS_TIME"), []string{}, nil},
		{"drop some", caps(nil, []string{"CAP_CHOWN", "KILL"}, nil), 0,
			without(DefaultCaps, "CAP_CHOWN", "CAP_KILL"), without(DefaultCaps, "CAP_CHOWN", "CAP_KILL"), []string{}, nil},
		{"drop ALL then add", caps([]string{"NET_BIND_SERVICE"}, []string{"ALL"}, nil), 0,
			[]string{"CAP_NET_BIND_SERVICE"}, []string{"CAP_NET_BIND_SERVICE"}, []string{}, nil},
		{"add ALL = host bounding set", caps([]string{"ALL"}, nil, nil), 0, nil, nil, []string{}, nil},
		{"cap missing from host bounding is left out", caps([]string{"SYS_RESOURCE"}, nil, nil), 0, DefaultCaps, DefaultCaps, []string{}, nil},
		{"non-root: effective and permitted cleared", nil, 1000, DefaultCaps, []string{}, []string{}, nil},
		{"non-root ambient kept", caps(nil, []string{"ALL"}, []string{"NET_BIND_SERVICE"}), 1000,
			[]string{"CAP_NET_BIND_SERVICE"}, []string{"CAP_NET_BIND_SERVICE"}, []string{"CAP_NET_BIND_SERVICE"}, nil},
		{"privileged = host bounding", &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}},
			0, nil, nil, []string{}, nil},
		{"unknown add", caps([]string{"CAP_FLY"}, nil, nil), 0, nil, nil, nil, errdefs.ErrInvalidArgument},
		{"unknown drop", caps(nil, []string{"WALK"}, nil), 0, nil, nil, nil, errdefs.ErrInvalidArgument},
		{"unknown ambient", caps(nil, nil, []string{"X"}), 0, nil, nil, nil, errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := capabilities(h, tt.sc, tt.uid)
			checkErr(t, err, tt.err, "capabilities")
			if err != nil {
				return
			}
			wantB, wantE := tt.bounding, tt.effective
			if wantB == nil {
				wantB, wantE = h.BoundingCaps, h.BoundingCaps
			}
			if !sameSet(got.Bounding, wantB) || !sameSet(got.Effective, wantE) || !sameSet(got.Permitted, wantE) ||
				!sameSet(got.Ambient, tt.ambient) || !sameSet(got.Inheritable, tt.ambient) {
				t.Fatalf("caps = %+v\nwant bounding %q effective %q ambient %q", got, wantB, wantE, tt.ambient)
			}
			if slices.Contains(got.Bounding, "CAP_SYS_RESOURCE") {
				t.Fatal("granted a capability the host lacks")
			}
		})
	}
}

func without(list []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(s string) bool { return slices.Contains(drop, s) })
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func TestContainerNamespaces(t *testing.T) {
	type nsmap = map[specs.LinuxNamespaceType]string // type -> path ("" = new)
	sb := SandboxNamespaces{Net: "/n", IPC: "/i", UTS: "/u", PID: "/p"}
	tests := []struct {
		name   string
		pod    *runtimeapi.NamespaceOption
		ctr    *runtimeapi.NamespaceOption
		sb     SandboxNamespaces
		target string
		want   nsmap
		err    error
	}{
		{"ordinary pod, CONTAINER pid", &runtimeapi.NamespaceOption{}, &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}, sb, "",
			nsmap{"mount": "", "network": "/n", "uts": "/u", "ipc": "/i", "pid": ""}, nil},
		{"POD pid joins the sandbox", &runtimeapi.NamespaceOption{}, &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}, sb, "",
			nsmap{"mount": "", "network": "/n", "uts": "/u", "ipc": "/i", "pid": "/p"}, nil},
		{"host network keeps host net and uts", &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}, &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			SandboxNamespaces{IPC: "/i"}, "", nsmap{"mount": "", "ipc": "/i", "pid": ""}, nil},
		{"host everything", &runtimeapi.NamespaceOption{Network: 2, Ipc: 2, Pid: 2}, &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE},
			SandboxNamespaces{}, "", nsmap{"mount": ""}, nil},
		{"POD pid in a host-pid pod", &runtimeapi.NamespaceOption{Pid: 2}, &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD},
			SandboxNamespaces{Net: "/n", IPC: "/i", UTS: "/u"}, "", nsmap{"mount": "", "network": "/n", "uts": "/u", "ipc": "/i"}, nil},
		{"TARGET", &runtimeapi.NamespaceOption{}, &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "c0"}, sb, "/proc/99/ns/pid",
			nsmap{"mount": "", "network": "/n", "uts": "/u", "ipc": "/i", "pid": "/proc/99/ns/pid"}, nil},
		{"TARGET without target_id", &runtimeapi.NamespaceOption{}, &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET}, sb, "/x", nil, errdefs.ErrInvalidArgument},
		{"TARGET without path", &runtimeapi.NamespaceOption{}, &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "c0"}, sb, "", nil, errdefs.ErrFailedPrecondition},
		{"unknown pid mode", &runtimeapi.NamespaceOption{}, &runtimeapi.NamespaceOption{Pid: 9}, sb, "", nil, errdefs.ErrInvalidArgument},
		{"missing sandbox path", &runtimeapi.NamespaceOption{}, &runtimeapi.NamespaceOption{Pid: 1}, SandboxNamespaces{Net: "/n"}, "", nil, errdefs.ErrFailedPrecondition},
		{"pod user namespace is joined", &runtimeapi.NamespaceOption{UsernsOptions: podUserns(0, 200000, 65536)},
			&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}, SandboxNamespaces{Net: "/n", IPC: "/i", UTS: "/u", PID: "/p", User: "/proc/1/ns/user"}, "",
			nsmap{"mount": "", "user": "/proc/1/ns/user", "network": "/n", "uts": "/u", "ipc": "/i", "pid": "/p"}, nil},
		{"pod user namespace without a path", &runtimeapi.NamespaceOption{UsernsOptions: podUserns(0, 200000, 65536)},
			&runtimeapi.NamespaceOption{}, sb, "", nil, errdefs.ErrFailedPrecondition},
		{"user namespace mode CONTAINER", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}},
			&runtimeapi.NamespaceOption{}, sb, "", nil, errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: tt.pod}}}
			sc := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: tt.ctr}
			got, err := containerNamespaces(pod, sc, tt.sb, tt.target, false)
			checkErr(t, err, tt.err, "")
			if err != nil {
				return
			}
			gotMap := nsmap{}
			for _, n := range got {
				gotMap[n.Type] = n.Path
			}
			if len(gotMap) != len(tt.want) || len(got) != len(tt.want) {
				t.Fatalf("namespaces = %+v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if p, ok := gotMap[k]; !ok || p != v {
					t.Fatalf("namespaces = %+v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestContainerSecurity(t *testing.T) {
	privileged := func(in *ContainerInput) {
		secCtx(in).Privileged = true
		in.SandboxConfig.Linux.SecurityContext.Privileged = true
	}
	tests := []struct {
		name  string
		mod   func(*ContainerInput)
		check func(*testing.T, *specs.Spec)
		err   error
	}{
		{"defaults: masked, readonly paths, no seccomp, device deny-all", nil, func(t *testing.T, s *specs.Spec) {
			if !slices.Equal(s.Linux.MaskedPaths, DefaultMaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, DefaultReadonlyPaths) {
				t.Errorf("masked %q readonly %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
			}
			if s.Linux.Seccomp != nil || s.Process.ApparmorProfile != "" || s.Process.NoNewPrivileges || s.Root.Readonly {
				t.Errorf("unexpected confinement: %+v", s.Process)
			}
			if d := s.Linux.Resources.Devices; len(d) == 0 || d[0].Allow || d[0].Access != "rwm" {
				t.Errorf("device rules %+v do not start with deny-all", d)
			}
		}, nil},
		{"CRI masked/readonly override", func(in *ContainerInput) {
			secCtx(in).MaskedPaths, secCtx(in).ReadonlyPaths = []string{"/proc/x"}, []string{"/proc/y"}
		}, func(t *testing.T, s *specs.Spec) {
			if !slices.Equal(s.Linux.MaskedPaths, []string{"/proc/x"}) || !slices.Equal(s.Linux.ReadonlyPaths, []string{"/proc/y"}) {
				t.Errorf("masked %q readonly %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
			}
		}, nil},
		{"readonly rootfs and no_new_privs", func(in *ContainerInput) { secCtx(in).ReadonlyRootfs, secCtx(in).NoNewPrivs = true, true },
			func(t *testing.T, s *specs.Spec) {
				if !s.Root.Readonly || !s.Process.NoNewPrivileges {
					t.Error("readonly rootfs / no_new_privs not applied")
				}
			}, nil},
		{"privileged: no masks, no seccomp, host devices, all allowed", func(in *ContainerInput) {
			privileged(in)
			secCtx(in).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			secCtx(in).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "x"}
		}, func(t *testing.T, s *specs.Spec) {
			if len(s.Linux.MaskedPaths)+len(s.Linux.ReadonlyPaths) != 0 || s.Linux.Seccomp != nil {
				t.Errorf("privileged still confined: %+v", s.Linux)
			}
			if len(s.Linux.Devices) != 2 || s.Linux.Devices[0].Path != "/dev/fuse" {
				t.Errorf("host devices %+v", s.Linux.Devices)
			}
			if d := s.Linux.Resources.Devices; len(d) != 1 || !d[0].Allow || d[0].Type != "" {
				t.Errorf("device rules %+v, want allow-all", d)
			}
			if !sameSet(s.Process.Capabilities.Bounding, fakeBounding()) {
				t.Errorf("privileged caps %q", s.Process.Capabilities.Bounding)
			}
		}, nil},
		{"privileged without host devices", func(in *ContainerInput) {
			privileged(in)
			in.Handler.PrivilegedWithoutHostDevices = true
		}, func(t *testing.T, s *specs.Spec) {
			if len(s.Linux.Devices) != 0 || s.Linux.Resources.Devices[0].Allow {
				t.Errorf("devices %+v rules %+v", s.Linux.Devices, s.Linux.Resources.Devices)
			}
		}, nil},
		{"privileged in an unprivileged sandbox", func(in *ContainerInput) { secCtx(in).Privileged = true }, nil, errdefs.ErrInvalidArgument},
		{"CRI devices", func(in *ContainerInput) {
			in.Config.Devices = []*runtimeapi.Device{
				{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rw"},
				{HostPath: "/dev/dri", ContainerPath: "/dev/gpu", Permissions: "rwm"},
			}
		}, func(t *testing.T, s *specs.Spec) {
			var paths []string
			for _, d := range s.Linux.Devices {
				paths = append(paths, d.Path)
			}
			if !slices.Equal(paths, []string{"/dev/fuse", "/dev/gpu/card0", "/dev/gpu/renderD128"}) {
				t.Errorf("device paths %q", paths)
			}
			rules := s.Linux.Resources.Devices
			last := rules[len(rules)-3]
			if !last.Allow || last.Type != "c" || *last.Major != 10 || *last.Minor != 229 || last.Access != "rw" {
				t.Errorf("fuse rule %+v", last)
			}
		}, nil},
		{"CRI device missing", func(in *ContainerInput) {
			in.Config.Devices = []*runtimeapi.Device{{HostPath: "/dev/nope", ContainerPath: "/dev/nope", Permissions: "r"}}
		}, nil, errdefs.ErrNotFound},
		{"CRI device bad permissions", func(in *ContainerInput) {
			in.Config.Devices = []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rwx"}}
		}, nil, errdefs.ErrInvalidArgument},
		{"AppArmor runtime default and unconfined accepted", func(in *ContainerInput) {
			secCtx(in).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
		}, nil, nil},
		{"AppArmor deprecated unconfined", func(in *ContainerInput) { secCtx(in).ApparmorProfile = "unconfined" }, nil, nil},
		{"AppArmor localhost refused", func(in *ContainerInput) {
			secCtx(in).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "localhost/k8s-nginx"}
		}, nil, errdefs.ErrInvalidArgument},
		{"AppArmor deprecated localhost refused", func(in *ContainerInput) { secCtx(in).ApparmorProfile = "localhost/x" }, nil, errdefs.ErrInvalidArgument},
		{"annotations: allowed only, own ones unspoofable", func(in *ContainerInput) {
			in.Handler.AllowedAnnotations = []string{"io.example/*", "exact", AnnotationContainerType}
			in.Config.Annotations = map[string]string{"io.example/a": "1", "exact": "2", "other": "3", AnnotationContainerType: "sandbox"}
			in.SandboxConfig.Annotations = map[string]string{"io.example/b": "4", "exact": "pod"}
		}, func(t *testing.T, s *specs.Spec) {
			a := s.Annotations
			if a["io.example/a"] != "1" || a["io.example/b"] != "4" || a["exact"] != "2" || a["other"] != "" {
				t.Errorf("annotations %v", a)
			}
			if a[AnnotationContainerType] != ContainerTypeContainer || a[AnnotationSandboxID] != "s1" || a[AnnotationContainerName] != "app" {
				t.Errorf("own annotations %v", a)
			}
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(t)
			if tt.mod != nil {
				tt.mod(&in)
			}
			res, err := ContainerSpec(in)
			checkErr(t, err, tt.err, "")
			if err == nil && tt.check != nil {
				tt.check(t, res.Spec)
			}
		})
	}
}
