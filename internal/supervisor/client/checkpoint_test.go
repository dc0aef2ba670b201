package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
)

// TestCheckpointOlderSupervisor: a 1.5 supervisor (one berthd could not
// upgrade) answers the 1.6 operations as unknown; berthd's error says why
// and maps to Unimplemented.
func TestCheckpointOlderSupervisor(t *testing.T) {
	stateDir := t.TempDir()
	sock := filepath.Join(stateDir, "supervisor", "supervisor.sock")
	os.MkdirAll(filepath.Dir(sock), 0o700)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				line, err := bufio.NewReader(conn).ReadBytes('\n')
				if err != nil {
					return
				}
				var req v1.Request
				json.Unmarshal(line, &req)
				// What a supervisor before 1.6 says (server.go's default case).
				b, _ := json.Marshal(v1.Response{Error: v1.Errorf(v1.CodeUnimplemented, "unknown operation %q", req.Op)})
				conn.Write(append(b, '\n'))
			}()
		}
	}()
	c := New(stateDir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for name, call := range map[string]func() error{
		"checkpoint": func() error { return c.Checkpoint(ctx, "x", v1.CheckpointRequest{}) },
		"restore": func() error {
			_, err := c.Restore(ctx, "x", v1.CreateRequest{Restore: &v1.RestoreRequest{}})
			return err
		},
		"pause": func() error { return c.Pause(ctx, "x", true) },
	} {
		err := call()
		if !errors.Is(err, errdefs.ErrUnimplemented) || !strings.Contains(err.Error(), "predates checkpoint/restore") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
