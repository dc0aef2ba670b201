package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	"github.com/berth-cri/berth/internal/apparmor"
	"github.com/berth-cri/berth/internal/cdi"
	"github.com/berth-cri/berth/internal/cgroupdriver"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/criu"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/events"
	"github.com/berth-cri/berth/internal/exec"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/imagepolicy"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/nri"
	"github.com/berth-cri/berth/internal/oci"
	"github.com/berth-cri/berth/internal/registry"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/server"
	servercontainer "github.com/berth-cri/berth/internal/server/container"
	serverevents "github.com/berth-cri/berth/internal/server/events"
	serverimage "github.com/berth-cri/berth/internal/server/image"
	"github.com/berth-cri/berth/internal/server/runtimeinfo"
	serversandbox "github.com/berth-cri/berth/internal/server/sandbox"
	serverstats "github.com/berth-cri/berth/internal/server/stats"
	"github.com/berth-cri/berth/internal/server/streaming"
	"github.com/berth-cri/berth/internal/snapshot"
	"github.com/berth-cri/berth/internal/statedir"
	"github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/supervisor/client"
	"github.com/berth-cri/berth/internal/version"
)

// daemonParts are the pieces serve builds and wires; each gets only the few
// dependencies it needs.
type daemonParts struct {
	log        *logrus.Logger
	cfg        *config.Holder
	ready      *server.Readiness
	network    *network.Manager
	images     *image.Service
	policy     *imagepolicy.Enforcer
	supervisor *client.Client
	sandboxes  *sandbox.Manager
	containers *container.Manager
	snapshots  *snapshot.Store
	// cgroupDriver is the driver resolved at start (cgroupdriver.Resolve).
	cgroupDriver cgroupdriver.Driver
	// criu is the CRIU probe's result at start.
	criu criu.Info
}

// serve runs berthd until SIGTERM or SIGINT.
func serve(configPath string, loaded *config.Loaded) error {
	cfg := loaded.Config
	log := logrus.New()
	log.SetOutput(os.Stderr)
	applyLogSettings(log, cfg)
	log.WithFields(logrus.Fields{"version": version.Version, "config": append([]string{config.DefaultSource}, loaded.Files...)}).Info("berthd starting")

	if err := os.MkdirAll(cfg.RootDir, 0o711); err != nil {
		return fmt.Errorf("create %s: %w", cfg.RootDir, err)
	}
	if err := prepareStateDir(log, cfg, statedir.ActivatedSockets()); err != nil {
		return err
	}
	// Signals are caught from the first instant: SIGHUP's default action
	// would kill berthd, and a reload may come while recovery runs.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	p := &daemonParts{log: log, cfg: config.NewHolder(cfg), ready: &server.Readiness{}}
	// Built even when metrics_address is off: recording into an unserved
	// registry is cheap and keeps the parts free of "is it on" checks.
	mtr := metrics.New()
	net, err := network.New(network.Options{
		ConfDir:  cfg.CNI.ConfDir,
		BinDirs:  cfg.CNI.BinDirs,
		CacheDir: filepath.Join(cfg.StateDir, "cni", "cache"),
		// The first config in lexical order is the pod network, as in containerd.
		PluginMaxConfNum: 1,
	}, log.WithField("part", "network"))
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	p.network = net
	go net.Watch(ctx)

	snapshots, err := snapshot.Open(filepath.Join(cfg.RootDir, "snapshots"))
	if err != nil {
		return fmt.Errorf("snapshots: %w", err)
	}
	// Two ready rootfs skeletons take ~1 ms of inode creation off each
	// container create (see snapshot.KeepSpares).
	snapshots.KeepSpares(2)
	resolver, err := registry.New(registryOptions(cfg))
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	p.policy = imagepolicy.NewEnforcer(log.WithField("part", "image-policy"), mtr)
	p.policy.Persist(filepath.Join(cfg.RootDir, "image-policy-verdicts.json"))
	if cfg.Registry.ImagePolicy != "" {
		pol, err := imagepolicy.Load(cfg.Registry.ImagePolicy)
		if err != nil {
			return err
		}
		p.policy.SetPolicy(pol)
		log.WithFields(logrus.Fields{"path": pol.Path, "version": pol.Version}).Info("image policy")
	}
	p.images, err = image.New(image.Options{
		Root:                   cfg.RootDir,
		Resolver:               resolver,
		Snapshots:              snapshots,
		MaxConcurrentDownloads: cfg.Registry.MaxConcurrentDownloads,
		PullProgressTimeout:    cfg.Registry.ImagePullProgressTimeout.Duration,
		PinnedImages:           sandboxImages(cfg),
		Log:                    log.WithField("part", "image"),
		Metrics:                mtr,
		Policy:                 p.policy,
	})
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}

	host, err := oci.ProbeHost()
	if err != nil {
		return err
	}
	// Resolved once: cgroupsPaths already made (records, the supervisor's
	// scope) follow it, so it changes only at a restart.
	host.CgroupDriver, err = cgroupdriver.Resolve(cfg.CgroupDriver, cgroupdriver.Probe())
	if err != nil {
		return err
	}
	log.WithFields(logrus.Fields{"cgroup_driver": host.CgroupDriver, "configured": cfg.CgroupDriver}).Info("cgroup driver")
	p.cgroupDriver = host.CgroupDriver
	// The default AppArmor profile, loaded once: a node without
	// apparmor_parser still runs, its RuntimeDefault containers unconfined,
	// and verbose Status says why.
	aa, err := apparmor.NewLoader().EnsureDefault(ctx, cfg.AppArmorDefaultProfile)
	if err != nil {
		log.WithError(err).Warn("apparmor: no default profile; RuntimeDefault containers run unconfined")
	}
	host.AppArmorDefault = aa.DefaultProfile
	p.supervisor = client.New(cfg.StateDir)
	p.sandboxes, err = sandbox.New(sandbox.Deps{
		Config: p.cfg, Images: p.images, Snapshots: snapshots, Network: net, Supervisor: p.supervisor, NetNS: sandbox.HostNetNS{}, Files: sandbox.HostFileMaker{},
		Host: host, RootDir: cfg.RootDir, StateDir: cfg.StateDir, Log: log.WithField("part", "sandbox"),
	})
	if err != nil {
		return fmt.Errorf("sandboxes: %w", err)
	}

	// CRIU is optional: without a usable one, checkpoint and restore
	// answer Unimplemented with the reason, which verbose Status shows.
	p.criu = criu.Probe(ctx, cfg.CriuPath)
	if p.criu.Error != "" {
		log.WithField("reason", p.criu.Error).Info("checkpoint/restore not available")
	} else {
		log.WithFields(logrus.Fields{"criu": p.criu.Path, "version": p.criu.Version}).Info("checkpoint/restore available")
	}
	p.containers, err = container.New(container.Deps{
		Config: p.cfg, Images: p.images, Snapshots: snapshots, Sandboxes: p.sandboxes, Supervisor: p.supervisor,
		Host: host, RootDir: cfg.RootDir, StateDir: cfg.StateDir, MaxLogLineSize: cfg.MaxContainerLogLineSize,
		Log: log.WithField("part", "container"), Metrics: mtr, Criu: p.criu,
	})
	if err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	p.sandboxes.SetContainers(p.containers)
	p.snapshots = snapshots

	broker := events.New()
	publisher := serverevents.NewPublisher(broker, p.sandboxes, p.containers)
	p.containers.SetEvents(publisher)
	p.sandboxes.SetEvents(publisher)
	// NRI is wired before recovery (exits recorded then are its events) and
	// opened to plugins after it, when the lists it hands them are right.
	var nriSvc *nri.NRI
	if cfg.NRI.Enable {
		cdiInject := cdi.New()
		nriSvc, err = nri.New(nri.Options{
			Config: cfg.NRI, Sandboxes: p.sandboxes, Containers: p.containers,
			InjectCDI: func(spec *specs.Spec, devices []string) error {
				return cdiInject.Inject(spec, p.cfg.Get().CDISpecDirs, devices)
			},
			RuntimeName: version.RuntimeName, RuntimeVersion: version.Version, Log: log.WithField("part", "nri"),
		})
		if err != nil {
			return err
		}
		p.sandboxes.SetNRI(nriSvc)
		p.containers.SetNRI(nriSvc)
	}
	cgroups, err := stats.NewCgroupReader()
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	statsSvc := serverstats.New(serverstats.Deps{
		Source: serverstats.NewSource(p.containers, p.sandboxes), Cgroups: cgroups,
		LayerUsage: snapshots.RootfsUsage, LayerMountpoint: snapshots.Mountpoint(), Log: log.WithField("part", "stats"),
	})

	streams, err := streaming.New(streaming.Config{
		Address: cfg.StreamServerAddress, Port: cfg.StreamServerPort, IdleTimeout: cfg.StreamIdleTimeout.Duration,
		TLSCert: cfg.StreamTLSCert, TLSKey: cfg.StreamTLSKey, MaxExecOutput: cfg.MaxExecOutput,
	}, streaming.NewLookup(p.containers, p.sandboxes), exec.New(log.WithField("part", "exec"), p.supervisor), p.supervisor, log.WithField("part", "streaming"))
	if err != nil {
		return fmt.Errorf("streaming server: %w", err)
	}
	if err := streams.Start(); err != nil {
		return fmt.Errorf("streaming server: %w", err)
	}
	defer streams.Stop()
	log.WithField("address", streams.Addr().String()).Info("streaming server listening")

	if cfg.MetricsAddress != "" {
		ms, err := metrics.Serve(cfg.MetricsAddress, mtr, log.WithField("part", "metrics"))
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ms.Shutdown(sctx)
		}()
		log.WithField("address", ms.Addr().String()).Info("serving metrics at /metrics")
	}

	containerSvc := servercontainer.New(p.containers)
	info := runtimeinfo.New(p.cfg, net, p.ready, runtimeinfo.Platform{CgroupDriver: host.CgroupDriver, AppArmor: aa}).WithImagePolicy(p.policy)
	info.SetCriu(p.criu)
	rt := newRuntimeServer(runtimeParts{
		info:       info,
		sandboxes:  serversandbox.New(p.sandboxes, containerSvc),
		containers: containerSvc,
		stats:      statsSvc,
		events:     serverevents.New(broker, 0),
		streaming:  streams,
	})
	img := newImageServer(serverimage.New(p.images))
	grpcServer := server.New(log.WithField("part", "cri"), p.ready, mtr, rt, img)

	lis, activated, err := server.Listen(cfg.Listen, cfg.SocketGroup)
	if err != nil {
		return err
	}
	defer lis.Close()
	serveErr := make(chan error, 1)
	go func() { serveErr <- grpcServer.Serve(lis) }()
	log.WithFields(logrus.Fields{"socket": cfg.Listen, "socket_activated": activated}).Info("serving the CRI")

	// Version and Status answer from here on; the rest waits for recovery.
	if err := p.recover(ctx); err != nil {
		grpcServer.Stop()
		return fmt.Errorf("start-up recovery: %w", err)
	}
	go watchSupervisor(ctx, log.WithField("part", "supervisor"), cfg.StateDir, p.cgroupDriver, mtr)
	if nriSvc != nil {
		if err := nriSvc.Start(); err != nil {
			grpcServer.Stop()
			return err
		}
		defer nriSvc.Stop()
		log.WithField("socket", cfg.NRI.SocketPath).Info("NRI plugins may connect")
	}
	p.ready.SetReady()
	daemon.SdNotify(false, daemon.SdNotifyReady)
	log.Info("ready")

	for {
		select {
		case err := <-serveErr:
			return fmt.Errorf("grpc server: %w", err)
		case sig := <-sigs:
			if sig == unix.SIGHUP {
				p.reload(configPath)
				continue
			}
			log.WithField("signal", sig.String()).Info("stopping")
			daemon.SdNotify(false, daemon.SdNotifyStopping)
			stopGracefully(grpcServer, 10*time.Second)
			// Layers still waiting for their flush would be dropped at
			// the next start if a reboot followed (snapshot.Store.Flush).
			snapshots.Flush()
			return nil
		}
	}
}

// recover brings berthd's view of the world back in line with what is on
// disk and running, before any RPC but Version/Status is served.
func (p *daemonParts) recover(ctx context.Context) error {
	if err := ensureSupervisor(ctx, p.log, p.cfg.Get().StateDir, p.cgroupDriver); err != nil {
		return err
	}
	if err := p.sandboxes.Recover(ctx); err != nil {
		return fmt.Errorf("sandboxes: %w", err)
	}
	if err := p.containers.Recover(ctx); err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	p.sweepOrphans(ctx)
	return nil
}

// sweepOrphans removes supervisor entries, container root filesystems and
// bundles that belong to no sandbox or container: what a crash left between
// removing a record and the things it named, or during a create before its
// first record (a container's rootfs and bundle are made while its record
// is written, and the supervisor creates nothing before it is).
func (p *daemonParts) sweepOrphans(ctx context.Context) {
	known := p.sandboxes.IDs()
	for id := range p.containers.IDs() {
		known[id] = true
	}
	states, err := p.supervisor.List(ctx)
	if err != nil {
		p.log.WithError(err).Error("list supervised containers to sweep")
	}
	for _, st := range states {
		if known[st.ID] {
			continue
		}
		log := p.log.WithField("id", st.ID)
		if err := p.supervisor.Kill(ctx, st.ID, unix.SIGKILL, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			log.WithError(err).Error("kill a supervised container no sandbox or container owns")
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		p.supervisor.Wait(wctx, st.ID)
		cancel()
		if err := p.supervisor.Delete(ctx, st.ID); err != nil {
			log.WithError(err).Error("remove a supervised container no sandbox or container owns")
			continue
		}
		log.Warn("removed a supervised container no sandbox or container owns")
	}
	keys, err := p.snapshots.ListRootfs()
	if err != nil {
		p.log.WithError(err).Error("list root filesystems to sweep")
	}
	for _, key := range keys {
		if known[key] {
			continue
		}
		log := p.log.WithField("rootfs", key)
		if err := p.snapshots.RemoveRootfs(key); err != nil {
			log.WithError(err).Error("remove a root filesystem no sandbox or container owns")
			continue
		}
		log.Warn("removed a root filesystem no sandbox or container owns")
	}
	for _, id := range p.containers.SweepBundles(known) {
		p.log.WithField("id", id).Warn("removed a container bundle no container owns")
	}
	// Dumps a crash cut short, archives unpacked for no container.
	p.containers.SweepCheckpoints()
}

func registryOptions(cfg *configv1.Config) registry.Options {
	return registry.Options{
		ConfigPath: cfg.Registry.ConfigPath,
		AuthFile:   cfg.Registry.AuthFile,
		UserAgent:  version.RuntimeName + "/" + version.Version,
	}
}

// sandboxImages are the pause images of every handler: kubelet's image GC
// must never remove them.
func sandboxImages(cfg *configv1.Config) []string {
	refs := []string{cfg.SandboxImage}
	for _, name := range config.HandlerNames(cfg) {
		if img := cfg.Runtimes[name].SandboxImage; img != "" {
			refs = append(refs, img)
		}
	}
	return refs
}

func applyLogSettings(log *logrus.Logger, cfg *configv1.Config) {
	level, err := logrus.ParseLevel(cfg.LogLevel)
	if err == nil {
		log.SetLevel(level)
	}
	if cfg.LogFormat == "json" {
		log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	} else {
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339Nano})
	}
}

// stopGracefully lets calls in flight finish, up to timeout, then cuts them.
func stopGracefully(s interface {
	GracefulStop()
	Stop()
}, timeout time.Duration) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		s.Stop()
	}
}
