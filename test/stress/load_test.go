package stress

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/snapshot"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

// TestConcurrentPulls pulls five images that share layers, fifty pulls at
// once: every pull succeeds, each shared layer is unpacked once, and no
// half-made snapshot is left.
func TestConcurrentPulls(t *testing.T) {
	needStress(t)
	d := newDaemon(t)
	base := harness.BusyboxLayer(t)
	shared := make([]v1.Layer, 2)
	for i := range shared {
		l, err := random.Layer(256<<10, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		shared[i] = l
	}
	const images = 5
	refs := make([]string, images)
	for i := range refs {
		own, err := random.Layer(128<<10, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		// base, one of the two shared layers, its own: chains overlap in
		// their first one or two layers.
		repo := fmt.Sprintf("stress/app%d:v1", i)
		d.reg.PushImage(t, repo, []v1.Layer{base, shared[i%2], own}, v1.Config{Cmd: []string{"sh"}})
		refs[i] = d.reg.Host + "/" + repo
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const pulls = 50
	ids := make([]string, pulls)
	errs := make([]error, pulls)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range pulls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = d.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: refs[i%images]}, nil, nil)
		}()
	}
	wg.Wait()
	fmt.Printf("pulls: %d concurrent pulls of %d images sharing layers in %s\n", pulls, images, time.Since(start).Round(time.Millisecond))
	for i, err := range errs {
		if err != nil {
			t.Errorf("pull %d (%s): %v", i, refs[i%images], err)
		} else if ids[i] != ids[i%images] {
			t.Errorf("pull %d got %s, pull %d of the same image %s", i, ids[i], i%images, ids[i%images])
		}
	}
	list, err := d.img.ListImages(ctx, nil)
	if err != nil || len(list) != images {
		t.Errorf("%d images listed, want %d: %v", len(list), images, err)
	}
	// Chains: base; base+shared0; base+shared1; and one per image.
	snaps, _ := readDirNames(d.Dir + "/root/snapshots/layers")
	var tmp []string
	names, _ := readDirNames(d.Dir + "/root/snapshots/tmp")
	for _, n := range names {
		if !strings.HasPrefix(n, snapshot.SpareDirPrefix) { // rootfs skeletons kept ready
			tmp = append(tmp, n)
		}
	}
	if len(snaps) != 3+images || len(tmp) != 0 {
		t.Errorf("%d layer snapshots (want %d), %d temp dirs", len(snaps), 3+images, len(tmp))
	}
}

// TestLoadWhileChurning runs 100 ExecSyncs at once into one container and
// hammers ListContainers and ListPodSandbox, while pods churn beside them:
// no error, no call stuck past its deadline.
func TestLoadWhileChurning(t *testing.T) {
	needStress(t)
	d := newDaemon(t)
	ctx := context.Background()
	if _, err := d.img.PullImage(ctx, d.containerConfig("x").Image, nil, nil); err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	pcfg := podConfig("exec-target", 0, logDir)
	pod, err := d.rt.RunPodSandbox(ctx, pcfg, "")
	if err != nil {
		t.Fatal(err)
	}
	target, err := d.rt.CreateContainer(ctx, pod, d.containerConfig("target", "sleep", "3600"), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.rt.StartContainer(ctx, target); err != nil {
		t.Fatal(err)
	}

	// The churn and the listers run until stop, each finishing the cycle
	// or call at hand: a cycle cut in the middle would leave its pod.
	var stop atomic.Bool
	c := &churner{d: d, seen: &ids{}, logDir: logDir}
	var churnErrs []error
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		for !stop.Load() {
			churnErrs = append(churnErrs, c.run(ctx, 5, 5)...)
		}
	}()

	began := time.Now()
	rounds, execErrs := 0, 0
	var lists atomic.Int64
	var listErr atomic.Value
	var listers sync.WaitGroup
	for range 4 {
		listers.Add(1)
		go func() {
			defer listers.Done()
			for !stop.Load() {
				if _, err := d.rt.ListContainers(ctx, nil); err != nil {
					listErr.Store(err)
				}
				if _, err := d.rt.ListPodSandbox(ctx, nil); err != nil {
					listErr.Store(err)
				}
				lists.Add(2)
			}
		}()
	}

	const execs = 100
	// Rounds of 100 at once until the pods beside have churned a while.
	for round := 0; round < 3 || (c.seq.Load() < 20 && round < 15); round++ {
		var wg sync.WaitGroup
		errs := make(chan error, execs)
		start := time.Now()
		for i := range execs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := fmt.Sprintf("exec-%d-%d", round, i)
				out, _, err := d.rt.ExecSync(ctx, target, []string{"echo", want}, 30*time.Second)
				if err == nil && strings.TrimSpace(string(out)) != want {
					err = fmt.Errorf("exec %s printed %q", want, out)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		n := 0
		for err := range errs {
			execErrs++
			if n++; n <= 3 {
				t.Errorf("round %d: %v", round, err)
			}
		}
		t.Logf("round %d: %d concurrent ExecSync in %s, %d errors", round, execs, time.Since(start).Round(time.Millisecond), n)
		rounds++
	}
	stop.Store(true)
	listers.Wait()
	<-churned
	fmt.Printf("load: %d rounds of %d concurrent ExecSync in %s, alongside %d pod cycles (5 in flight) and %d list calls, %d errors\n",
		rounds, execs, time.Since(began).Round(time.Millisecond), c.seq.Load(), lists.Load(), execErrs+len(churnErrs))
	for i, err := range churnErrs {
		if i == 3 {
			break
		}
		t.Errorf("churn: %v", err)
	}
	if execErrs > 0 {
		for _, line := range strings.Split(d.Logs.String(), "\n") {
			if strings.Contains(line, "exec") && (strings.Contains(line, "level=warn") || strings.Contains(line, "level=error") || strings.Contains(line, "holding its output")) {
				t.Log(line)
			}
		}
	}
	if err, _ := listErr.Load().(error); err != nil {
		t.Errorf("list: %v", err)
	}
	// Only the target pod is left, with its pause and container running.
	harness.WaitFor(t, "the churn's pods gone", 30*time.Second, func() bool {
		pods, _ := d.rt.ListPodSandbox(ctx, nil)
		return len(pods) == 1
	})
	if got := len(d.SupervisedPIDs()); got != 2 {
		t.Errorf("%d supervised processes, want 2 (the target's pause and container)", got)
	}
}
