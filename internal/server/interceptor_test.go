package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/metrics"
)

func TestRedactedClearsCredentials(t *testing.T) {
	req := &runtimeapi.PullImageRequest{
		Image: &runtimeapi.ImageSpec{Image: "busybox"},
		Auth: &runtimeapi.AuthConfig{
			Username: "alice", Password: "s3cret-pw", Auth: "YWxpY2U6czNjcmV0",
			IdentityToken: "id-tok", RegistryToken: "reg-tok", ServerAddress: "example.com",
		},
	}
	got := marshalForLog(req)
	for _, secret := range []string{"s3cret-pw", "YWxpY2U6czNjcmV0", "id-tok", "reg-tok"} {
		if strings.Contains(got, secret) {
			t.Errorf("logged request %s contains %q", got, secret)
		}
	}
	if !strings.Contains(got, "busybox") {
		t.Errorf("logged request %s lost the image", got)
	}
	if req.Auth.Password != "s3cret-pw" {
		t.Error("redaction modified the request itself")
	}
}

func TestInterceptorGateAndCodes(t *testing.T) {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.TraceLevel)
	ready := &Readiness{}
	i := &interceptor{log: log, ready: ready}
	call := func(method string, err error) error {
		_, e := i.unary(context.Background(), &runtimeapi.PullImageRequest{Auth: &runtimeapi.AuthConfig{Password: "pw-123"}},
			&grpc.UnaryServerInfo{FullMethod: method},
			func(ctx context.Context, req any) (any, error) {
				if logctx.RequestID(ctx) == "" {
					t.Error("no request id in the handler's context")
				}
				return nil, err
			})
		return e
	}
	for _, tc := range []struct {
		name   string
		ready  bool
		method string
		err    error
		want   codes.Code
	}{
		{"version before ready", false, "/runtime.v1.RuntimeService/Version", nil, codes.OK},
		{"status before ready", false, "/runtime.v1.RuntimeService/Status", nil, codes.OK},
		{"image fs info before ready", false, "/runtime.v1.ImageService/ImageFsInfo", nil, codes.OK},
		{"remove image before ready", false, "/runtime.v1.ImageService/RemoveImage", nil, codes.Unavailable},
		{"create container before ready", false, "/runtime.v1.RuntimeService/CreateContainer", nil, codes.Unavailable},
		{"create container after ready", true, "/runtime.v1.RuntimeService/CreateContainer", nil, codes.OK},
		{"domain error mapped", true, "/runtime.v1.RuntimeService/CreateContainer", fmt.Errorf("x: %w", errdefs.ErrNotFound), codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ready {
				ready.SetReady()
			}
			if got := status.Code(call(tc.method, tc.err)); got != tc.want {
				t.Fatalf("code %v, want %v", got, tc.want)
			}
		})
	}
	traced := 0
	for _, e := range hook.AllEntries() {
		if s, err := e.String(); err == nil && strings.Contains(s, "pw-123") {
			t.Fatalf("a log line carries the password: %s", s)
		}
		if e.Level == logrus.TraceLevel && e.Data["request"] != nil {
			traced++
		}
	}
	// Regression: the level was asked of logrus's standard logger, so
	// berthd's own at trace level never logged a request.
	if traced == 0 {
		t.Fatal("no request was logged at trace level: the password check above proved nothing")
	}
}

// fakeStream is the part of a server stream the interceptor uses.
type fakeStream struct {
	grpc.ServerStream
}

func (fakeStream) Context() context.Context { return context.Background() }

func TestInterceptorRecordsMetrics(t *testing.T) {
	log, _ := test.NewNullLogger()
	ready := &Readiness{}
	m := metrics.New()
	i := &interceptor{log: log, ready: ready, metrics: m}
	unary := func(method string, err error) {
		i.unary(context.Background(), &runtimeapi.VersionRequest{}, &grpc.UnaryServerInfo{FullMethod: method},
			func(context.Context, any) (any, error) { return nil, err })
	}
	stream := func(method string, err error) {
		i.stream(nil, fakeStream{}, &grpc.StreamServerInfo{FullMethod: method},
			func(any, grpc.ServerStream) error { return err })
	}
	unary("/runtime.v1.RuntimeService/ListContainers", nil) // gated: not ready yet
	ready.SetReady()
	unary("/runtime.v1.RuntimeService/Version", nil)
	unary("/runtime.v1.RuntimeService/Version", nil)
	unary("/runtime.v1.RuntimeService/StartContainer", fmt.Errorf("x: %w", errdefs.ErrNotFound))
	stream("/runtime.v1.RuntimeService/GetContainerEvents", nil)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`berth_cri_requests_total{code="Unavailable",method="/runtime.v1.RuntimeService/ListContainers"} 1`,
		`berth_cri_requests_total{code="OK",method="/runtime.v1.RuntimeService/Version"} 2`,
		`berth_cri_requests_total{code="NotFound",method="/runtime.v1.RuntimeService/StartContainer"} 1`,
		`berth_cri_requests_total{code="OK",method="/runtime.v1.RuntimeService/GetContainerEvents"} 1`,
		`berth_cri_request_duration_seconds_count{method="/runtime.v1.RuntimeService/Version"} 2`,
		`berth_cri_request_duration_seconds_count{method="/runtime.v1.RuntimeService/GetContainerEvents"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestInterceptorRecoversPanics: a handler's panic on a malformed request
// becomes an Internal error for that request, never a dead berthd.
func TestInterceptorRecoversPanics(t *testing.T) {
	log, hook := test.NewNullLogger()
	ready := &Readiness{}
	ready.SetReady()
	i := &interceptor{log: log, ready: ready}
	resp, err := i.unary(context.Background(), &runtimeapi.VersionRequest{}, &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/Version"},
		func(context.Context, any) (any, error) {
			var m map[string]int
			m["x"] = 1 // nil map write
			return &runtimeapi.VersionResponse{}, nil
		})
	if resp != nil || status.Code(err) != codes.Internal {
		t.Errorf("unary panic: resp %v err %v, want Internal", resp, err)
	}
	err = i.stream(nil, fakeStream{}, &grpc.StreamServerInfo{FullMethod: "/runtime.v1.RuntimeService/GetContainerEvents"},
		func(any, grpc.ServerStream) error { panic("boom") })
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "boom") {
		t.Errorf("stream panic: %v, want Internal", err)
	}
	logged := 0
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.ErrorLevel && strings.Contains(fmt.Sprint(e.Data["stack"]), "interceptor") {
			logged++
		}
	}
	if logged != 2 {
		t.Errorf("%d panics logged with their stack, want 2", logged)
	}
}

// TestInterceptorTiesLinesToTheRequest: the handler's context carries the
// request's log fields, every line the interceptor writes carries them,
// and a failure's message names the request for kubelet's error to lead to
// the logs.
func TestInterceptorTiesLinesToTheRequest(t *testing.T) {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	ready := &Readiness{}
	ready.SetReady()
	i := &interceptor{log: log, ready: ready}
	for _, tc := range []struct {
		name       string
		method     string
		req        any
		err        error
		wantFields logrus.Fields
	}{
		{"container request fails", "/runtime.v1.RuntimeService/StartContainer", &runtimeapi.StartContainerRequest{ContainerId: "c1"},
			fmt.Errorf("start: %w", errdefs.ErrFailedPrecondition), logrus.Fields{"rpc": "StartContainer", "container": "c1"}},
		{"create names its pod", "/runtime.v1.RuntimeService/CreateContainer", &runtimeapi.CreateContainerRequest{PodSandboxId: "p1"},
			status.Error(codes.Internal, "already a status"), logrus.Fields{"rpc": "CreateContainer", "pod": "p1"}},
		{"success", "/runtime.v1.RuntimeService/Version", &runtimeapi.VersionRequest{}, nil, logrus.Fields{"rpc": "Version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hook.Reset()
			var id string
			_, err := i.unary(context.Background(), tc.req, &grpc.UnaryServerInfo{FullMethod: tc.method},
				func(ctx context.Context, req any) (any, error) {
					id = logctx.RequestID(ctx)
					for k, v := range tc.wantFields {
						if got := logctx.Fields(ctx)[k]; got != v {
							t.Errorf("handler's context: %s = %v, want %v", k, got, v)
						}
					}
					logctx.G(ctx, log).Info("domain line")
					return nil, tc.err
				})
			if id == "" {
				t.Fatal("no request id in the handler's context")
			}
			if tc.err == nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
			} else {
				if status.Code(err) != status.Code(errdefs.ToGRPC(tc.err)) {
					t.Errorf("code %v, want %v", status.Code(err), status.Code(errdefs.ToGRPC(tc.err)))
				}
				if want := "(request " + id + ")"; !strings.HasSuffix(status.Convert(err).Message(), want) {
					t.Errorf("error %q does not end with %q", err, want)
				}
			}
			if len(hook.AllEntries()) < 2 {
				t.Fatalf("%d lines logged, want the domain line and the interceptor's", len(hook.AllEntries()))
			}
			for _, e := range hook.AllEntries() {
				if e.Data["request_id"] != id {
					t.Errorf("line %q has request_id %v, want %s", e.Message, e.Data["request_id"], id)
				}
				for k, v := range tc.wantFields {
					if e.Data[k] != v {
						t.Errorf("line %q: %s = %v, want %v", e.Message, k, e.Data[k], v)
					}
				}
			}
		})
	}
}
