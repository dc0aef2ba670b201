// Package server is the CRI gRPC edge: the socket, the interceptor and the
// assembly of the per-family services into the two CRI gRPC services.
package server

import (
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/metrics"
)

// MaxMsgSize is the largest CRI message berthd sends or receives. kubelet's
// client accepts 16 MiB (CRI-CONTRACT.md); ExecSync output and long
// ListContainers replies must fit.
const MaxMsgSize = 16 * 1024 * 1024

// New builds the gRPC server serving rt and img behind the interceptor,
// which records every call in m (nil: no metrics).
func New(log logrus.FieldLogger, ready *Readiness, m *metrics.Metrics, rt runtimeapi.RuntimeServiceServer, img runtimeapi.ImageServiceServer) *grpc.Server {
	i := &interceptor{log: log, ready: ready, metrics: m}
	s := grpc.NewServer(
		grpc.MaxRecvMsgSize(MaxMsgSize),
		grpc.MaxSendMsgSize(MaxMsgSize),
		grpc.ChainUnaryInterceptor(i.unary),
		grpc.ChainStreamInterceptor(i.stream),
	)
	runtimeapi.RegisterRuntimeServiceServer(s, rt)
	runtimeapi.RegisterImageServiceServer(s, img)
	return s
}
