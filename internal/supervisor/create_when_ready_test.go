package supervisor_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/supervisor"
	"github.com/berth-cri/berth/internal/supervisor/client"
	"github.com/berth-cri/berth/internal/testsupport"
)

// OpCreateWhenReady: the supervisor prepares while the client is not ready,
// creates only after Proceed, and keeps nothing when the client gives up.
func TestCreateWhenReady(t *testing.T) {
	c, stateDir := startSupervisor(t)
	ctx := testCtx(t)
	dirOf := func(id string) string { return filepath.Join(stateDir, "supervisor", "containers", id) }

	t.Run("ready", func(t *testing.T) {
		logPath := filepath.Join(t.TempDir(), "ready.log")
		var prepared bool
		ready := func() error {
			// The supervisor makes the container's directory (and opens
			// its log) while the caller prepares, before it is told to go
			// on: both must appear while ready has not returned.
			prepared = testsupport.Poll(testsupport.Slow(2*time.Second), 5*time.Millisecond, func() bool {
				_, err := os.Stat(filepath.Join(dirOf("ready"), "container.json"))
				_, lerr := os.Stat(logPath)
				return err == nil && lerr == nil
			})
			return nil
		}
		req := v1.CreateRequest{Bundle: bundle(t, "ready", "echo hi"), LogPath: logPath, SpecWritten: true}
		if _, err := c.CreateWhenReady(ctx, "ready", req, ready); err != nil {
			t.Fatal(err)
		}
		if !prepared {
			t.Error("nothing was prepared before ready returned")
		}
		if _, err := c.Start(ctx, "ready"); err != nil {
			t.Fatal(err)
		}
		if e := wait(t, c, "ready"); e.ExitCode != 0 {
			t.Fatalf("exit %+v", e)
		}
		if recs := readLog(t, logPath); len(recs) != 1 || recs[0].msg != "hi" {
			t.Fatalf("log %+v", recs)
		}
	})

	t.Run("spec written by ready", func(t *testing.T) {
		done := bundle(t, "late", "true")
		dir := t.TempDir() // the bundle, without its config.json yet
		ready := func() error {
			data, err := os.ReadFile(filepath.Join(done, "config.json"))
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
			}
			return err
		}
		if _, err := c.CreateWhenReady(ctx, "late", v1.CreateRequest{Bundle: dir}, ready); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Start(ctx, "late"); err != nil {
			t.Fatal(err)
		}
		wait(t, c, "late")
	})

	t.Run("given up", func(t *testing.T) {
		why := errors.New("rootfs failed")
		logPath := filepath.Join(t.TempDir(), "gaveup.log")
		_, err := c.CreateWhenReady(ctx, "gaveup", v1.CreateRequest{Bundle: bundle(t, "gaveup", "true"), LogPath: logPath}, func() error { return why })
		if !errors.Is(err, why) {
			t.Fatalf("create: %v, want the ready error", err)
		}
		if _, err := c.State(ctx, "gaveup"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("state after giving up: %v, want not found", err)
		}
		for _, p := range []string{dirOf("gaveup"), logPath} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Fatalf("%s after giving up: %v", p, err)
			}
		}
		// The id is free again.
		run(t, c, "gaveup", v1.CreateRequest{Bundle: bundle(t, "gaveup", "true")})
		wait(t, c, "gaveup")
	})

	t.Run("client gone", func(t *testing.T) {
		conn, err := net.Dial("unix", supervisor.SocketPath(stateDir))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := json.Marshal(v1.Request{Version: v1.Version, Op: v1.OpCreateWhenReady, ID: "gone",
			Create: &v1.CreateRequest{Bundle: bundle(t, "gone", "true")}})
		conn.Write(append(req, '\n'))
		time.Sleep(50 * time.Millisecond)
		conn.Close() // berthd died before its rootfs was ready
		testsupport.PollUntil(t, "the abandoned create is undone", 5*time.Second, func() bool {
			_, err := c.State(ctx, "gone")
			_, serr := os.Stat(dirOf("gone"))
			return errors.Is(err, errdefs.ErrNotFound) && os.IsNotExist(serr)
		})
	})
}

// A supervisor before protocol 1.4 answers Unimplemented at once: the
// client waits for ready, then creates as before.
func TestCreateWhenReadyOldSupervisor(t *testing.T) {
	dir := t.TempDir()
	sock := supervisor.SocketPath(dir)
	os.MkdirAll(filepath.Dir(sock), 0o700)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ops := make(chan v1.Op, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(conn).ReadBytes('\n')
			var req v1.Request
			json.Unmarshal(line, &req)
			ops <- req.Op
			resp := v1.Response{State: &v1.State{ID: req.ID, Status: v1.StatusCreated}}
			if req.Op != v1.OpCreate {
				resp = v1.Response{Error: v1.Errorf(v1.CodeUnimplemented, "unknown operation %q", req.Op)}
			}
			data, _ := json.Marshal(resp)
			conn.Write(append(data, '\n'))
			conn.Close()
		}
	}()
	readyCalls := 0
	st, err := client.New(dir).CreateWhenReady(testCtx(t), "old", v1.CreateRequest{Bundle: "/b"}, func() error { readyCalls++; return nil })
	if err != nil || st.Status != v1.StatusCreated {
		t.Fatalf("create: %+v, %v", st, err)
	}
	if readyCalls != 1 {
		t.Errorf("ready called %d times", readyCalls)
	}
	if a, b := <-ops, <-ops; a != v1.OpCreateWhenReady || b != v1.OpCreate {
		t.Errorf("ops %s, %s", a, b)
	}
}
