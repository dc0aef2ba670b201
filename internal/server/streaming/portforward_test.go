package streaming

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/portforward"

	"github.com/berth-cri/berth/internal/netns"
)

// podNetNS creates a pinned network namespace with loopback up and an HTTP
// server listening on 127.0.0.1 inside it; it returns the pin and the port.
func podNetNS(t *testing.T) (string, int) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "netns")
	path, err := netns.New(dir, "pod")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		netns.Remove(path)
		for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		}
	})
	if out, err := exec.Command("nsenter", "--net="+path, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	var ln net.Listener
	if err := netns.Do(path, func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from the pod")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return path, ln.Addr().(*net.TCPAddr).Port
}

func TestPortForward(t *testing.T) {
	path, port := podNetNS(t)
	// The port is not open on the host: only the namespace has it.
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
		c.Close()
		// skip: chance (a port taken on the host)
		t.Skipf("port %d is also open on the host; cannot tell namespaces apart", port)
	}
	l := newLookup()
	l.netns["pod"] = path
	s := newService(t, l, nil)
	ctx := testCtx(t)
	if _, err := s.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "nope"}); err == nil {
		t.Fatal("port forward to an unknown sandbox succeeded")
	}
	resp, err := s.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "pod", Port: []int32{int32(port)}})
	if err != nil {
		t.Fatal(err)
	}
	conn := spdyDial(t, resp.Url, portforward.ProtocolV1Name)
	stream := func(typ string) io.ReadWriteCloser {
		h := http.Header{}
		h.Set(portforward.StreamType, typ)
		h.Set(portforward.PortHeader, strconv.Itoa(port))
		h.Set(portforward.PortForwardRequestIDHeader, "0")
		s, err := conn.CreateStream(h)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	errStream := stream(portforward.StreamTypeError)
	errStream.Close()
	data := stream(portforward.StreamTypeData)
	fmt.Fprintf(data, "GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
	reply, _ := io.ReadAll(data)
	if !strings.Contains(string(reply), "hello from the pod") {
		errs, _ := io.ReadAll(errStream)
		t.Fatalf("reply %q (error stream %q)", reply, errs)
	}
}
