package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
)

// fakeSupervisor listens on the socket of a Client for stateDir; answer
// says whether it answers requests (Version) or hangs up at once, as a
// supervisor shutting down does. It counts the connections accepted.
func fakeSupervisor(t *testing.T, stateDir string, answer bool) *atomic.Int64 {
	t.Helper()
	return fakeSupervisorSeeing(t, stateDir, answer, nil)
}

// fakeSupervisorSeeing is fakeSupervisor also sending each request it
// answers to seen (if not nil).
func fakeSupervisorSeeing(t *testing.T, stateDir string, answer bool, seen chan<- v1.Request) *atomic.Int64 {
	t.Helper()
	sock := filepath.Join(stateDir, "supervisor", "supervisor.sock")
	os.MkdirAll(filepath.Dir(sock), 0o700)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int64
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			if !answer {
				conn.Close()
				continue
			}
			go func() {
				defer conn.Close()
				line, err := bufio.NewReader(conn).ReadBytes('\n')
				if err != nil {
					return
				}
				if seen != nil {
					var req v1.Request
					json.Unmarshal(line, &req)
					seen <- req
				}
				b, _ := json.Marshal(v1.Response{Version: &v1.VersionInfo{BootID: "b"}})
				conn.Write(append(b, '\n'))
			}()
		}
	}()
	return &n
}

// TestBackoffWhileSupervisorAway pins issue 17 item 7: with the supervisor
// hanging up on every connection, berthd's many open Waits (one per
// running container) redialled every 20 ms each, ~2000 connections in 2 s
// for 20 containers. Now the attempts back off exponentially, shared.
func TestBackoffWhileSupervisorAway(t *testing.T) {
	dir := t.TempDir()
	accepted := fakeSupervisor(t, dir, false)
	c := New(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	errs := make(chan error)
	for range 20 {
		go func() { _, err := c.Wait(ctx, "c1"); errs <- err }()
	}
	for range 20 {
		if err := <-errs; !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("Wait: %v, want ErrUnavailable at the deadline", err)
		}
	}
	// 20 callers' first attempts, then a few rounds at growing intervals.
	if n := accepted.Load(); n > 200 {
		t.Errorf("%d connections in 2 s from 20 callers, want a backoff (at most 200)", n)
	}
}

// TestBackoffRecovers: after the supervisor was away long enough for the
// backoff to reach its cap, a call is answered within about the cap of the
// supervisor coming back, and the waiting calls all get through.
func TestBackoffRecovers(t *testing.T) {
	dir := t.TempDir()
	c := New(dir)
	results := make(chan error, 10)
	for range 10 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := c.Version(ctx)
			results <- err
		}()
	}
	time.Sleep(3 * time.Second) // no socket: the backoff reaches its cap
	back := time.Now()
	fakeSupervisor(t, dir, true)
	for range 10 {
		if err := <-results; err != nil {
			t.Fatalf("Version after the supervisor came back: %v", err)
		}
	}
	if d := time.Since(back); d > maxRetry+500*time.Millisecond {
		t.Errorf("answered %v after the supervisor came back, want within the cap %v", d, maxRetry)
	}
}

// TestConnectWithin: a create whose work goes on without its caller
// (context.WithoutCancel) stops waiting for an absent supervisor when the
// caller's deadline passes, with ErrUnavailable, instead of retrying for
// ever.
func TestConnectWithin(t *testing.T) {
	c := New(t.TempDir())
	caller, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	work := ConnectWithin(context.WithoutCancel(caller), caller)
	done := make(chan error, 1)
	go func() {
		_, err := c.CreateWhenReady(work, "c1", v1.CreateRequest{}, func() error {
			t.Error("ready called with no supervisor reached")
			return nil
		})
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("create still waiting for the supervisor 3 s after its caller's deadline")
	}
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("create: %v, want ErrUnavailable", err)
	}
}

func TestBackoffDelays(t *testing.T) {
	var b backoff
	var got []time.Duration
	for range 9 {
		b.failures++
		got = append(got, b.delay())
	}
	want := []time.Duration{20, 40, 80, 160, 320, 640, 1000, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
}

// TestStderrIsJournal: the supervisor is given berthd's stderr only when
// JOURNAL_STREAM names it (berthd under systemd).
func TestStderrIsJournal(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Fstat(2, &st); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		want bool
	}{
		{"", false},
		{"garbage", false},
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false},
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino), true},
	} {
		t.Setenv("JOURNAL_STREAM", tc.env)
		if got := stderrIsJournal(); got != tc.want {
			t.Errorf("JOURNAL_STREAM=%q: %v, want %v", tc.env, got, tc.want)
		}
	}
}
