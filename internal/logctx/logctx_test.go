package logctx

import (
	"context"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

func TestWithFieldsMergesWithoutTouchingTheParent(t *testing.T) {
	parent := WithFields(context.Background(), logrus.Fields{RequestIDField: "r1", RPCField: "CreateContainer"})
	child := WithFields(parent, logrus.Fields{ContainerField: "c1", RPCField: "other"})

	for _, tc := range []struct {
		name string
		ctx  context.Context
		want logrus.Fields
	}{
		{"none", context.Background(), nil},
		{"no context (a library's call)", nil, nil},
		{"empty fields leave ctx", WithFields(context.Background(), nil), nil},
		{"parent", parent, logrus.Fields{RequestIDField: "r1", RPCField: "CreateContainer"}},
		{"child adds and overrides", child, logrus.Fields{RequestIDField: "r1", RPCField: "other", ContainerField: "c1"}},
		{"one field", WithField(parent, PodField, "p1"), logrus.Fields{RequestIDField: "r1", RPCField: "CreateContainer", PodField: "p1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Fields(tc.ctx)
			if len(got) != len(tc.want) {
				t.Fatalf("fields %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("field %s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"none", context.Background(), ""},
		{"set", WithField(context.Background(), RequestIDField, "abc"), "abc"},
		{"kept under more fields", WithField(WithField(context.Background(), RequestIDField, "abc"), PodField, "p"), "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RequestID(tc.ctx); got != tc.want {
				t.Errorf("RequestID = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestGKeepsTheLoggersOwnFields: the line has the part's own fields and
// the request's, and a logger without a request in ctx logs as before.
func TestGKeepsTheLoggersOwnFields(t *testing.T) {
	log, hook := test.NewNullLogger()
	part := log.WithField("part", "container")
	ctx := WithFields(context.Background(), logrus.Fields{RequestIDField: "r1", ContainerField: "c1"})

	G(ctx, part).WithError(context.Canceled).Warn("with request")
	G(context.Background(), part).Info("without request")

	entries := hook.AllEntries()
	if len(entries) != 2 {
		t.Fatalf("%d lines, want 2", len(entries))
	}
	with, without := entries[0].Data, entries[1].Data
	for k, want := range map[string]any{"part": "container", RequestIDField: "r1", ContainerField: "c1", logrus.ErrorKey: context.Canceled} {
		if with[k] != want {
			t.Errorf("line with request: %s = %v, want %v", k, with[k], want)
		}
	}
	if without["part"] != "container" || without[RequestIDField] != nil {
		t.Errorf("line without request has fields %v", without)
	}
}
