package nri

import (
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// specEditor is the small spec-editing surface NRI's adjustment code
// (github.com/containerd/nri/pkg/runtime-tools/generate) drives: each
// method edits the one spec it wraps in place. It stands in for
// runtime-tools' generator, which would bring a module of its own for a
// few dozen one-line edits.
type specEditor struct{ s *specs.Spec }

func (e specEditor) Spec() *specs.Spec { return e.s }

func (e specEditor) process() *specs.Process {
	if e.s.Process == nil {
		e.s.Process = &specs.Process{}
	}
	return e.s.Process
}

func (e specEditor) linux() *specs.Linux {
	if e.s.Linux == nil {
		e.s.Linux = &specs.Linux{}
	}
	return e.s.Linux
}

func (e specEditor) resources() *specs.LinuxResources {
	l := e.linux()
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

func (e specEditor) cpu() *specs.LinuxCPU {
	r := e.resources()
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	return r.CPU
}

func (e specEditor) memory() *specs.LinuxMemory {
	r := e.resources()
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	return r.Memory
}

func (e specEditor) hooks() *specs.Hooks {
	if e.s.Hooks == nil {
		e.s.Hooks = &specs.Hooks{}
	}
	return e.s.Hooks
}

func (e specEditor) AddAnnotation(key, value string) {
	if e.s.Annotations == nil {
		e.s.Annotations = map[string]string{}
	}
	e.s.Annotations[key] = value
}

func (e specEditor) RemoveAnnotation(key string) { delete(e.s.Annotations, key) }

// AddDevice replaces a device at the same path, else appends.
func (e specEditor) AddDevice(d specs.LinuxDevice) {
	l := e.linux()
	for i := range l.Devices {
		if l.Devices[i].Path == d.Path {
			l.Devices[i] = d
			return
		}
	}
	l.Devices = append(l.Devices, d)
}

func (e specEditor) RemoveDevice(path string) {
	if e.s.Linux == nil {
		return
	}
	e.s.Linux.Devices = slices.DeleteFunc(e.s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == path })
}

// namespaceType maps NRI's namespace names ("network", "pid"…) to the
// spec's; they are the same strings, checked here.
func namespaceType(ns string) (specs.LinuxNamespaceType, error) {
	switch t := specs.LinuxNamespaceType(ns); t {
	case specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace, specs.IPCNamespace,
		specs.UTSNamespace, specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace:
		return t, nil
	}
	return "", fmt.Errorf("unknown namespace type %q", ns)
}

func (e specEditor) AddOrReplaceLinuxNamespace(ns, path string) error {
	t, err := namespaceType(ns)
	if err != nil {
		return err
	}
	l := e.linux()
	for i := range l.Namespaces {
		if l.Namespaces[i].Type == t {
			l.Namespaces[i].Path = path
			return nil
		}
	}
	l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: t, Path: path})
	return nil
}

func (e specEditor) RemoveLinuxNamespace(ns string) error {
	t, err := namespaceType(ns)
	if err != nil {
		return err
	}
	if e.s.Linux != nil {
		e.s.Linux.Namespaces = slices.DeleteFunc(e.s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
	}
	return nil
}

func (e specEditor) AddPreStartHook(h specs.Hook) {
	e.hooks().Prestart = append(e.hooks().Prestart, h) // deprecated in the spec, still honoured by runc
}
func (e specEditor) AddPostStartHook(h specs.Hook) {
	e.hooks().Poststart = append(e.hooks().Poststart, h)
}
func (e specEditor) AddPostStopHook(h specs.Hook) { e.hooks().Poststop = append(e.hooks().Poststop, h) }

// AddProcessEnv sets name, replacing an earlier value of it.
func (e specEditor) AddProcessEnv(name, value string) {
	p := e.process()
	kv := name + "=" + value
	for i, v := range p.Env {
		if len(v) > len(name) && v[:len(name)+1] == name+"=" {
			p.Env[i] = kv
			return
		}
	}
	p.Env = append(p.Env, kv)
}

func (e specEditor) ClearProcessEnv() {
	if e.s.Process != nil {
		e.s.Process.Env = nil
	}
}

func (e specEditor) SetProcessArgs(args []string)  { e.process().Args = args }
func (e specEditor) SetProcessOOMScoreAdj(adj int) { e.process().OOMScoreAdj = &adj }

func (e specEditor) AddLinuxResourcesDevice(allow bool, typ string, major, minor *int64, access string) {
	r := e.resources()
	r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Major: major, Minor: minor, Access: access})
}

func (e specEditor) AddLinuxResourcesHugepageLimit(pageSize string, limit uint64) {
	r := e.resources()
	for i := range r.HugepageLimits {
		if r.HugepageLimits[i].Pagesize == pageSize {
			r.HugepageLimits[i].Limit = limit
			return
		}
	}
	r.HugepageLimits = append(r.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: pageSize, Limit: limit})
}

func (e specEditor) AddLinuxResourcesUnified(key, val string) {
	r := e.resources()
	if r.Unified == nil {
		r.Unified = map[string]string{}
	}
	r.Unified[key] = val
}

func (e specEditor) AddLinuxSysctl(key, value string) {
	l := e.linux()
	if l.Sysctl == nil {
		l.Sysctl = map[string]string{}
	}
	l.Sysctl[key] = value
}

func (e specEditor) RemoveLinuxSysctl(key string) {
	if e.s.Linux != nil {
		delete(e.s.Linux.Sysctl, key)
	}
}

func (e specEditor) AddMount(m specs.Mount) { e.s.Mounts = append(e.s.Mounts, m) }
func (e specEditor) ClearMounts()           { e.s.Mounts = nil }
func (e specEditor) Mounts() []specs.Mount  { return slices.Clone(e.s.Mounts) }
func (e specEditor) RemoveMount(dest string) {
	e.s.Mounts = slices.DeleteFunc(e.s.Mounts, func(m specs.Mount) bool { return m.Destination == dest })
}

func (e specEditor) SetLinuxCgroupsPath(path string)      { e.linux().CgroupsPath = path }
func (e specEditor) SetLinuxResourcesCPUCpus(cpus string) { e.cpu().Cpus = cpus }
func (e specEditor) SetLinuxResourcesCPUMems(mems string) { e.cpu().Mems = mems }
func (e specEditor) SetLinuxResourcesCPUPeriod(p uint64)  { e.cpu().Period = &p }
func (e specEditor) SetLinuxResourcesCPUQuota(q int64)    { e.cpu().Quota = &q }
func (e specEditor) SetLinuxResourcesCPUShares(s uint64)  { e.cpu().Shares = &s }
func (e specEditor) SetLinuxResourcesMemoryLimit(l int64) { e.memory().Limit = &l }
func (e specEditor) SetLinuxResourcesMemorySwap(s int64)  { e.memory().Swap = &s }
func (e specEditor) SetLinuxResourcesCPURealtimePeriod(p uint64) {
	e.cpu().RealtimePeriod = &p
}
func (e specEditor) SetLinuxResourcesCPURealtimeRuntime(t int64) {
	e.cpu().RealtimeRuntime = &t
}

func (e specEditor) SetLinuxRootPropagation(rp string) error {
	switch rp {
	case "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
		e.linux().RootfsPropagation = rp
		return nil
	}
	return fmt.Errorf("rootfs propagation %q is not one of private, slave, shared, unbindable (or their r forms)", rp)
}
