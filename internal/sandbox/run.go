package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/fault"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/oci"
	"github.com/berth-cri/berth/internal/proctree"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/supervisor/client"
	"github.com/berth-cri/berth/internal/userns"
)

// Run creates and starts the sandbox of cfg and returns its id. A retry of
// a create kubelet gave up on (same name) gets that sandbox's id; the work
// of a create goes on when its caller is gone, and a failure half-way
// rolls back everything set up so far.
func (m *Manager) Run(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	md := cfg.GetMetadata()
	if md.GetName() == "" || md.GetNamespace() == "" || md.GetUid() == "" {
		return "", fmt.Errorf("pod sandbox metadata needs name, namespace and uid: %w", errdefs.ErrInvalidArgument)
	}
	if err := oci.CheckMetadata("pod sandbox config", cfg.GetLabels(), cfg.GetAnnotations()); err != nil {
		return "", err
	}
	// A bad user namespace request is refused before anything is made.
	if _, err := oci.UserNamespace(cfg); err != nil {
		return "", err
	}
	h, err := config.ResolveHandler(m.d.Config.Get(), handler)
	if err != nil {
		return "", err
	}
	name := podName(md)
	id, _, err := m.inflight.Do(ctx, name, func(wctx context.Context) (string, error) {
		return m.run(wctx, ctx, name, cfg, handler, h)
	})
	if err != nil {
		return "", err
	}
	if ctx.Err() == nil {
		if err := m.t.MarkDelivered(id); err != nil {
			logctx.G(ctx, m.d.Log).WithError(err).WithField("sandbox", id).Warn("record the delivery of a create")
		}
	}
	return id, nil
}

// run does the work of Run. ctx is never cancelled; caller is the client's
// context, only asked whether anyone still waits.
func (m *Manager) run(ctx, caller context.Context, name string, cfg *runtimeapi.PodSandboxConfig, handler string, h config.Handler) (string, error) {
	if id, err := m.t.Reserved(name); id != "" || err != nil {
		return id, err // a retry of a create kubelet stopped waiting for, or a taken name
	}

	cfgJSON, err := protojson.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encode pod config: %w", err)
	}
	conf := m.d.Config.Get()
	pauseRef := conf.SandboxImage
	if h.Runtime.SandboxImage != "" {
		pauseRef = h.Runtime.SandboxImage
	}
	s := &Sandbox{
		ID: store.NewID(), Name: name, ConfigJSON: cfgJSON, RuntimeHandler: handler, Runtime: h.Name,
		State: StateCreating, CreatedAt: time.Now().UnixNano(), config: cfg,
	}
	ctx = logctx.WithField(ctx, logctx.PodField, s.ID)
	unlock := m.t.Lock(s.ID)
	defer unlock()

	img, err := m.pauseImage(ctx, pauseRef, handler, s.ID)
	if err != nil {
		return "", err
	}
	s.Image = img.ID.String()
	// From here on the record exists, so a crash leaves a trace that
	// recovery rolls back.
	if err := m.t.Put(s); err != nil {
		m.d.Images.Release(s.Image, holder(s.ID))
		return "", err
	}
	// Waiting for an unreachable supervisor ends with the caller: nobody
	// else would wait for it, and kubelet's retry starts over.
	if err := m.setUp(client.ConnectWithin(ctx, caller), s, img, h); err != nil {
		if rbErr := m.tearDown(ctx, s); rbErr != nil {
			logctx.G(ctx, m.d.Log).WithError(rbErr).WithField("sandbox", s.ID).Error("roll back a failed RunPodSandbox")
		}
		return "", err
	}
	// NRI plugins see the pod before anyone else can: it is listed only
	// once they have accepted it.
	if m.nri != nil {
		defer m.nri.BlockSync()()
		if err := m.nri.RunPodSandbox(ctx, s.clone()); err != nil {
			if rbErr := m.tearDown(ctx, s); rbErr != nil {
				logctx.G(ctx, m.d.Log).WithError(rbErr).WithField("sandbox", s.ID).Error("roll back a failed RunPodSandbox")
			}
			return "", err
		}
	}
	if err := m.t.Update(s, func(s *Sandbox) { s.State = StateReady; s.Delivered = caller.Err() == nil }); err != nil {
		if rbErr := m.tearDown(ctx, s); rbErr != nil {
			logctx.G(ctx, m.d.Log).WithError(rbErr).WithField("sandbox", s.ID).Error("roll back a failed RunPodSandbox")
		}
		if m.nri != nil {
			m.nri.RemovePodSandbox(ctx, s.clone())
		}
		return "", err
	}
	m.events.SandboxEvent(EventCreated, s.clone())
	m.events.SandboxEvent(EventStarted, s.clone())
	go m.watchPause(s.ID)
	return s.ID, nil
}

// holder names a sandbox as a user of its pause image.
func holder(id string) string { return "sandbox:" + id }

// pauseImage returns the pause image, pulled with node-level credentials if
// absent (RunPodSandbox carries none), and marks it used by sandbox id.
func (m *Manager) pauseImage(ctx context.Context, ref, handler, id string) (image.Image, error) {
	img, err := m.d.Images.Use(ref, holder(id))
	if errors.Is(err, errdefs.ErrNotFound) {
		if _, err = m.d.Images.Pull(ctx, ref, nil, handler); err != nil {
			return image.Image{}, fmt.Errorf("sandbox image: %w", err)
		}
		img, err = m.d.Images.Use(ref, holder(id))
	}
	if err != nil {
		return image.Image{}, fmt.Errorf("sandbox image %q: %w", ref, err)
	}
	return img, nil
}

// setUp makes the sandbox's network namespace, network, files, rootfs and
// pause process, recording in s each thing tearDown must undo. CNI ADD, the
// longest step of a pod start, needs only the netns pin: it starts first,
// and the rest (files, rootfs, pause) is made while it runs. In a pod user
// namespace the pause creates the network namespace (see pinPauseNetwork),
// so CNI ADD follows the start instead.
func (m *Manager) setUp(ctx context.Context, s *Sandbox, img image.Image, h config.Handler) error {
	cfg := s.config
	idmap, err := oci.UserNamespace(cfg)
	if err != nil {
		return err
	}
	netnsPath := ""
	if !s.HostNetwork() && idmap == nil {
		netnsPath = filepath.Join(m.netnsDir(), s.ID)
	}
	type netResult struct {
		res network.Result
		err error
	}
	netDone := make(chan netResult, 1)
	if netnsPath != "" {
		pod, err := m.networkPod(s)
		if err != nil {
			return err
		}
		if _, err := m.d.NetNS.New(m.netnsDir(), s.ID); err != nil {
			return fmt.Errorf("pod network namespace: %w", err)
		}
		if err := m.t.Update(s, func(s *Sandbox) { s.NetNS = netnsPath }); err != nil {
			return err
		}
		pod.NetNS = netnsPath
		go func() {
			res, err := m.d.Network.Setup(ctx, pod)
			netDone <- netResult{res, err}
		}()
	} else {
		netDone <- netResult{}
	}
	pid, startErr := m.makePause(ctx, s, img, h, idmap, netnsPath)
	nr := <-netDone
	fault.Point("sandbox.after-cni-add")
	if nr.err == nil && netnsPath != "" {
		var ips []string
		for _, ip := range nr.res.IPs {
			ips = append(ips, ip.String())
		}
		if err := m.t.Update(s, func(s *Sandbox) { s.NetworkReady, s.IPs = true, ips }); err != nil {
			return err
		}
	}
	if startErr != nil {
		return startErr
	}
	if nr.err != nil {
		return fmt.Errorf("pod network: %w", nr.err)
	}
	start, ok := proctree.StartTime(pid)
	if !ok {
		return fmt.Errorf("pause process %d ended as it started: %w", pid, errdefs.ErrUnavailable)
	}
	if err := m.t.Update(s, func(s *Sandbox) { s.PausePID, s.PauseStartTime = pid, start }); err != nil {
		return err
	}
	if idmap != nil && !s.HostNetwork() {
		return m.pinPauseNetwork(ctx, s, pid)
	}
	return nil
}

// pinPauseNetwork pins the network namespace the pause of a user-namespaced
// pod created, and sets up the pod network in it. The pod's user namespace
// must own it: the kernel lets a user namespace mount sysfs and write net.*
// sysctls only for network namespaces it owns, and one made by berthd would
// be the host's. Should berthd die before the pin is recorded, recovery
// sweeps the unowned pin; before the pin, the namespace dies with the pause.
func (m *Manager) pinPauseNetwork(ctx context.Context, s *Sandbox, pid int) error {
	// The pod's network description is checked before the pin is
	// recorded: a bad one found after would fail the rollback's CNI DEL
	// too, and the pod could never be removed.
	pod, err := m.networkPod(s)
	if err != nil {
		return err
	}
	path, err := m.d.NetNS.Pin(m.netnsDir(), s.ID, fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return fmt.Errorf("pod network namespace: %w", err)
	}
	if err := m.t.Update(s, func(s *Sandbox) { s.NetNS = path }); err != nil {
		return err
	}
	pod.NetNS = path
	res, err := m.d.Network.Setup(ctx, pod)
	if err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	var ips []string
	for _, ip := range res.IPs {
		ips = append(ips, ip.String())
	}
	return m.t.Update(s, func(s *Sandbox) { s.NetworkReady, s.IPs = true, ips })
}

// makePause prepares the pause's rootfs, the pod files and the spec, then
// creates and starts the pause.
func (m *Manager) makePause(ctx context.Context, s *Sandbox, img image.Image, h config.Handler, idmap *userns.Mappings, netnsPath string) (int, error) {
	mnt, err := m.d.Snapshots.PrepareRootfs(s.ID, img.ChainIDs)
	if err != nil {
		return 0, fmt.Errorf("sandbox rootfs: %w", err)
	}
	files, err := m.d.Files.Prepare(m.podDir(s.ID), s.config, m.d.HostFiles)
	if err != nil {
		return 0, err
	}
	spec, err := oci.SandboxSpec(oci.SandboxInput{
		ID: s.ID, Config: s.config, Image: img.Spec.Config, Rootfs: mnt.Target, NetNSPath: netnsPath,
		PodFiles: oci.PodFiles{Shm: files.Shm}, Host: m.d.Host, Handler: config.OCIHandler(h),
	})
	if err != nil {
		return 0, err
	}
	return m.startPause(ctx, s, spec, h, idmap)
}

// startPause mounts the pause rootfs (id-mapped for a pod user namespace),
// writes its bundle and has the supervisor create and start it.
func (m *Manager) startPause(ctx context.Context, s *Sandbox, spec any, h config.Handler, idmap *userns.Mappings) (int, error) {
	mount := func() (string, error) { return m.d.Snapshots.MountRootfs(s.ID) }
	if idmap != nil {
		mount = func() (string, error) { return m.d.Snapshots.MountRootfsMapped(s.ID, *idmap) }
	}
	if _, err := mount(); err != nil {
		return 0, fmt.Errorf("mount sandbox rootfs: %w", err)
	}
	bundle := m.bundleDir(s.ID)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return 0, fmt.Errorf("sandbox bundle: %w", err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return 0, fmt.Errorf("encode sandbox spec: %w", err)
	}
	if err := atomicfile.WriteVolatile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		return 0, err
	}
	kind, path, root := config.SupervisorRuntime(h, m.d.StateDir)
	if _, err := m.d.Supervisor.Create(ctx, s.ID, supv1.CreateRequest{Bundle: bundle, Kind: kind, RuntimePath: path, RuntimeRoot: root}); err != nil {
		return 0, fmt.Errorf("create pause: %w", err)
	}
	st, err := m.d.Supervisor.Start(ctx, s.ID)
	if err != nil {
		return 0, fmt.Errorf("start pause: %w", err)
	}
	return st.Pid, nil
}

// networkPod is the CNI view of s.
func (m *Manager) networkPod(s *Sandbox) (network.Pod, error) {
	cfg := s.config
	md := cfg.GetMetadata()
	pod := network.Pod{ID: s.ID, Name: md.GetName(), Namespace: md.GetNamespace(), UID: md.GetUid(), NetNS: s.NetNS}
	for _, p := range cfg.GetPortMappings() {
		if p.GetHostPort() <= 0 {
			continue // nothing to map on the host: kubelet sends container-only ports too
		}
		pod.PortMappings = append(pod.PortMappings, network.PortMapping{
			HostPort: p.GetHostPort(), ContainerPort: p.GetContainerPort(),
			Protocol: strings.ToLower(p.GetProtocol().String()), HostIP: p.GetHostIp(),
		})
	}
	bw, err := network.ParseBandwidth(cfg.GetAnnotations())
	if err != nil {
		return network.Pod{}, err
	}
	pod.Bandwidth = bw
	return pod, nil
}
