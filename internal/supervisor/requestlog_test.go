package supervisor

import (
	"context"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
)

// TestRequestLines: every line of an operation carries the request id
// berthd sent (when it sent one), the operation and the container, at the
// level its outcome deserves.
func TestRequestLines(t *testing.T) {
	for _, tc := range []struct {
		name      string
		req       v1.Request
		err       *v1.Error
		wantLevel logrus.Level // 0 with wantLine false: nothing logged
		wantLine  bool
	}{
		{"failed create", v1.Request{Op: v1.OpCreate, ID: "c1", RequestID: "r1"}, v1.Errorf(v1.CodeInternal, "exec: no such file"), logrus.WarnLevel, true},
		{"unknown container", v1.Request{Op: v1.OpKill, ID: "c1", RequestID: "r1"}, v1.Errorf(v1.CodeNotFound, "container"), logrus.DebugLevel, true},
		{"failed exec", v1.Request{Op: v1.OpExecCommand, ID: "c1", RequestID: "r1"}, v1.Errorf(v1.CodeInternal, "exec: not found"), logrus.DebugLevel, true},
		{"done", v1.Request{Op: v1.OpStart, ID: "c1", RequestID: "r1"}, nil, logrus.DebugLevel, true},
		{"a client before 1.7", v1.Request{Op: v1.OpDelete, ID: "c1"}, nil, logrus.DebugLevel, true},
		{"quiet success", v1.Request{Op: v1.OpVersion, RequestID: "r1"}, nil, 0, false},
		{"client gone", v1.Request{Op: v1.OpWait, ID: "c1"}, v1.Errorf(v1.CodeInternal, "context canceled"), logrus.DebugLevel, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, hook := test.NewNullLogger()
			log.SetLevel(logrus.DebugLevel)
			s := &Server{log: log}
			ctx := requestContext(context.Background(), &tc.req)
			if tc.name == "client gone" {
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				ctx = cctx
			}
			s.logResult(ctx, tc.req.Op, tc.err, time.Millisecond)
			entries := hook.AllEntries()
			if !tc.wantLine {
				if len(entries) != 0 {
					t.Fatalf("logged %d lines, want none", len(entries))
				}
				return
			}
			if len(entries) != 1 {
				t.Fatalf("logged %d lines, want 1", len(entries))
			}
			e := entries[0]
			if e.Level != tc.wantLevel {
				t.Errorf("level %v, want %v", e.Level, tc.wantLevel)
			}
			want := logrus.Fields{"op": string(tc.req.Op), "container": tc.req.ID}
			if tc.req.RequestID != "" {
				want["request_id"] = tc.req.RequestID
			} else if _, ok := e.Data["request_id"]; ok {
				t.Errorf("a request without an id logged request_id %v", e.Data["request_id"])
			}
			for k, v := range want {
				if e.Data[k] != v {
					t.Errorf("%s = %v, want %v", k, e.Data[k], v)
				}
			}
			if (tc.err != nil) != (e.Data[logrus.ErrorKey] != nil) {
				t.Errorf("error field %v, want %v", e.Data[logrus.ErrorKey], tc.err)
			}
		})
	}
}
