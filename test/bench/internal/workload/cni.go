package workload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/berth-cri/berth/internal/netns"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/test/bench/internal/target"
)

// cniBinDir is where hack/bench.sh's runtimes find the CNI plugins.
const cniBinDir = "/usr/lib/cni"

// cniFloor runs the runtime's own CNI network (the one conflist in its
// cni_conf_dir: bridge, host-local, portmap, bandwidth) for a new network
// namespace, ADD then DEL, and times each: the floor under
// RunPodSandbox's network setup and StopPodSandbox's teardown. The
// namespace is made and removed untimed, as a runtime could have it ready.
type cniFloor struct {
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
	dir  string // network namespace pins and libcni's cache
}

// newCNIFloor loads t's network; ErrNotApplicable without a cni_conf_dir.
func newCNIFloor(t *target.Target, dir string) (*cniFloor, error) {
	if t.CNIConfDir == "" {
		return nil, fmt.Errorf("%w: no cni_conf_dir for %s in targets.json", ErrNotApplicable, t.Name)
	}
	confs, err := filepath.Glob(filepath.Join(t.CNIConfDir, "*.conflist"))
	if err != nil || len(confs) != 1 {
		return nil, fmt.Errorf("CNI floor: want one conflist in %s, found %d (%v)", t.CNIConfDir, len(confs), err)
	}
	list, err := libcni.ConfListFromFile(confs[0])
	if err != nil {
		return nil, fmt.Errorf("CNI floor: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &cniFloor{
		// The plugins run as berthd runs them (GOMAXPROCS=1): the floor
		// is the cheapest run of the same chain.
		cni:  libcni.NewCNIConfigWithCacheDir([]string{cniBinDir}, filepath.Join(dir, "cache"), network.PluginExec()),
		list: list,
		dir:  dir,
	}, nil
}

// addDel times one ADD and one DEL of the network for a new namespace.
func (f *cniFloor) addDel(ctx context.Context) (add, del time.Duration, err error) {
	id := "floor-" + randomID()
	path, err := netns.New(filepath.Join(f.dir, "netns"), id)
	if err != nil {
		return 0, 0, fmt.Errorf("CNI floor: %w", err)
	}
	defer netns.Remove(path)
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: path, IfName: "eth0"}
	t0 := time.Now()
	_, addErr := f.cni.AddNetworkList(ctx, f.list, rt)
	add = time.Since(t0)
	// DEL even after a failed ADD: it releases what ADD took.
	t1 := time.Now()
	delErr := f.cni.DelNetworkList(ctx, f.list, rt)
	del = time.Since(t1)
	if addErr != nil || delErr != nil {
		return add, del, fmt.Errorf("CNI floor: %w", errors.Join(addErr, delErr))
	}
	return add, del, nil
}
