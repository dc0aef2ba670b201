package network

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/testsupport"
)

// NetworkReady follows the conf dir without a restart: a config appearing
// in an empty (here: not yet created) dir makes it ready, its removal not.
func TestWatch(t *testing.T) {
	requireLoopback(t)
	dir := filepath.Join(t.TempDir(), "net.d")
	m := newTestManager(t, dir, 1)
	m.watchEvery = 10 * time.Millisecond
	if ready, _, msg := m.Status(); ready || !strings.Contains(msg, "no network config found in "+dir) {
		t.Fatalf("Status = %v, %q; want not ready, no config", ready, msg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.Watch(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Written under another name and renamed in, as installers do.
	writeFile(t, dir, ".tmp", strings.Replace(loList, "%s", "first", 1))
	if err := os.Rename(filepath.Join(dir, ".tmp"), filepath.Join(dir, "10-first.conflist")); err != nil {
		t.Fatal(err)
	}
	testsupport.PollUntil(t, "ready", 10*time.Second, func() bool { ready, _, _ := m.Status(); return ready })

	// A config rewritten in place is picked up too.
	writeFile(t, dir, "10-first.conflist", strings.Replace(loList, "%s", "renamed", 1))
	testsupport.PollUntil(t, "reload", 10*time.Second, func() bool {
		nets, _, err := m.snapshot()
		return err == nil && nets[0].Name == "renamed"
	})

	if err := os.Remove(filepath.Join(dir, "10-first.conflist")); err != nil {
		t.Fatal(err)
	}
	testsupport.PollUntil(t, "not ready", 10*time.Second, func() bool { ready, _, _ := m.Status(); return !ready })
}

// A config whose plugin is not installed yet turns ready when the binary
// arrives, with no change to the conf dir.
func TestWatchPluginArrives(t *testing.T) {
	requireLoopback(t)
	confDir, binDir := t.TempDir(), t.TempDir()
	writeFile(t, confDir, "10-late.conflist", `{"cniVersion":"1.0.0","name":"late","plugins":[{"type":"late-plugin"}]}`)
	m, err := New(Options{ConfDir: confDir, BinDirs: []string{binDir}, CacheDir: t.TempDir(), PluginMaxConfNum: 1}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	m.watchEvery = 10 * time.Millisecond
	if ready, _, msg := m.Status(); ready || !strings.Contains(msg, "late-plugin") {
		t.Fatalf("Status = %v, %q; want not ready, naming the missing plugin", ready, msg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Watch(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	if err := os.Symlink("/usr/lib/cni/loopback", filepath.Join(binDir, "late-plugin")); err != nil {
		t.Fatal(err)
	}
	testsupport.PollUntil(t, "ready", 10*time.Second, func() bool { ready, _, _ := m.Status(); return ready })
}

// A reload that changes cni.bin_dirs (SetBinDirs) makes a config whose plugin
// is only in the new dir ready, through Watch, with no restart.
func TestSetBinDirs(t *testing.T) {
	requireLoopback(t)
	confDir, oldDir, newDir := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, confDir, "10-moved.conflist", `{"cniVersion":"1.0.0","name":"moved","plugins":[{"type":"moved-plugin"}]}`)
	if err := os.Symlink("/usr/lib/cni/loopback", filepath.Join(newDir, "moved-plugin")); err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{ConfDir: confDir, BinDirs: []string{oldDir}, CacheDir: t.TempDir(), PluginMaxConfNum: 1}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	m.watchEvery = 10 * time.Millisecond
	if ready, _, _ := m.Status(); ready {
		t.Fatal("ready with the plugin outside the bin dirs")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Watch(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	if err := m.SetBinDirs(nil); err == nil {
		t.Fatal("SetBinDirs(nil) accepted")
	}
	if err := m.SetBinDirs([]string{newDir}); err != nil {
		t.Fatal(err)
	}
	testsupport.PollUntil(t, "ready", 10*time.Second, func() bool { ready, _, _ := m.Status(); return ready })
}
