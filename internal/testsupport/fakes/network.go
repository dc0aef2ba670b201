package fakes

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/berth-cri/berth/internal/network"
)

// Network is a pod network that gives each pod set up an address and
// remembers which pods have one.
type Network struct {
	R *Recorder

	mu   sync.Mutex
	pods map[string]bool
}

// Pods returns the ids of the pods set up and not torn down.
func (f *Network) Pods() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.pods {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (f *Network) Setup(ctx context.Context, p network.Pod) (network.Result, error) {
	if err := f.R.Call("Network.Setup", p.ID, p.NetNS); err != nil {
		return network.Result{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pods == nil {
		f.pods = map[string]bool{}
	}
	f.pods[p.ID] = true
	return network.Result{IPs: []net.IP{net.IPv4(10, 88, 0, byte(len(f.pods)+1))}, Interface: "eth0"}, nil
}

func (f *Network) Teardown(ctx context.Context, p network.Pod) error {
	if err := f.R.Call("Network.Teardown", p.ID, p.NetNS); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pods, p.ID)
	return nil
}

// NetNS keeps network namespace pins as names: dir/id.
type NetNS struct {
	R *Recorder

	mu   sync.Mutex
	pins []string // paths
}

// Pins returns the paths pinned.
func (f *NetNS) Pins() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pins)
}

func (f *NetNS) add(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.pins, path) {
		f.pins = append(f.pins, path)
	}
}

// Add pins dir/id without a call (what an earlier run left).
func (f *NetNS) Add(dir, id string) { f.add(filepath.Join(dir, id)) }

func (f *NetNS) New(dir, id string) (string, error) {
	if err := f.R.Call("NetNS.New", id); err != nil {
		return "", err
	}
	f.Add(dir, id)
	return filepath.Join(dir, id), nil
}

func (f *NetNS) Pin(dir, id, src string) (string, error) {
	if err := f.R.Call("NetNS.Pin", id, src); err != nil {
		return "", err
	}
	f.Add(dir, id)
	return filepath.Join(dir, id), nil
}

func (f *NetNS) Remove(path string) error {
	if err := f.R.Call("NetNS.Remove", filepath.Base(path)); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pins = slices.DeleteFunc(f.pins, func(p string) bool { return p == path })
	return nil
}

func (f *NetNS) List(dir string) ([]string, error) {
	if err := f.R.Call("NetNS.List"); err != nil {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, p := range f.pins {
		if id, ok := strings.CutPrefix(p, dir+"/"); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
