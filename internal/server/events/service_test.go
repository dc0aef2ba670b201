package events

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/events"
	"github.com/berth-cri/berth/internal/testsupport"
)

// runtimeServer serves only GetContainerEvents; the rest is the generated
// Unimplemented (fine in a test: berthd assembles its own server).
type runtimeServer struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	*Service
}

func (r runtimeServer) GetContainerEvents(req *runtimeapi.GetEventsRequest, s grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	return errdefs.ToGRPC(r.Service.GetContainerEvents(req, s))
}

// serve starts a gRPC server with small flow-control windows (so that a
// client that does not read blocks the server's Send soon) and returns a
// client.
func serve(t *testing.T, svc *Service) runtimeapi.RuntimeServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 16)
	srv := grpc.NewServer(grpc.InitialWindowSize(1<<16), grpc.InitialConnWindowSize(1<<16))
	runtimeapi.RegisterRuntimeServiceServer(srv, runtimeServer{Service: svc})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

// subscribe opens a stream and waits until the server has subscribed, so
// that events published afterwards are the stream's.
func subscribe(t *testing.T, ctx context.Context, b *events.Broker, c runtimeapi.RuntimeServiceClient, want int) grpc.ServerStreamingClient[runtimeapi.ContainerEventResponse] {
	t.Helper()
	stream, err := c.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !testsupport.Poll(5*time.Second, time.Millisecond, func() bool { return b.Subscribers() == want }) {
		t.Fatalf("%d subscribers, want %d", b.Subscribers(), want)
	}
	return stream
}

func ev(id string, typ runtimeapi.ContainerEventType) *runtimeapi.ContainerEventResponse {
	return &runtimeapi.ContainerEventResponse{ContainerId: id, ContainerEventType: typ, CreatedAt: time.Now().UnixNano()}
}

func TestGetContainerEventsDelivers(t *testing.T) {
	b := events.New()
	c := serve(t, New(b, 0))
	ctx, cancel := context.WithCancel(t.Context())
	s1 := subscribe(t, ctx, b, c, 1)
	s2 := subscribe(t, ctx, b, c, 2)
	want := []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	for _, typ := range want {
		b.Publish(ev("c1", typ))
	}
	for i, s := range []grpc.ServerStreamingClient[runtimeapi.ContainerEventResponse]{s1, s2} {
		for _, typ := range want {
			got, err := s.Recv()
			if err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
			if got.ContainerId != "c1" || got.ContainerEventType != typ {
				t.Fatalf("stream %d: got %v, want %v", i, got, typ)
			}
		}
	}
	cancel()
	if _, err := s1.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("after cancel: %v", err)
	}
	if !testsupport.Poll(5*time.Second, time.Millisecond, func() bool { return b.Subscribers() == 0 }) {
		t.Fatal("server kept the subscriptions of cancelled streams")
	}
}

// TestGetContainerEventsSlowClient: a client that stops reading never
// blocks Publish; its stream is cut with ResourceExhausted once its buffer
// overflows, and it gets what was sent before.
func TestGetContainerEventsSlowClient(t *testing.T) {
	b := events.New()
	c := serve(t, New(b, 4))
	stream := subscribe(t, t.Context(), b, c, 1)

	// Big events fill the flow-control windows fast. Publish until the
	// broker drops the subscriber; a bound keeps a bug from looping.
	big := strings.Repeat("x", 4096)
	published := 0
	for b.Subscribers() > 0 {
		if published > 100000 {
			t.Fatal("subscriber never dropped")
		}
		e := ev("slow", runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
		e.PodSandboxStatus = &runtimeapi.PodSandboxStatus{Id: big}
		b.Publish(e)
		published++
	}
	received := 0
	var err error
	for {
		if _, err = stream.Recv(); err != nil {
			break
		}
		received++
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream ended with %v, want ResourceExhausted", err)
	}
	if received == 0 || received >= published {
		t.Fatalf("received %d of %d: want the ones sent before the cut", received, published)
	}
	if !strings.Contains(err.Error(), "behind") {
		t.Fatalf("error does not say why: %v", err)
	}
}
