package main

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	serverimage "github.com/berth-cri/berth/internal/server/image"
	"github.com/berth-cri/berth/internal/server/runtimeinfo"
)

// runtimeServer assembles the RuntimeService from one service per RPC
// family. The families are embedded at depth 1 and the Unimplemented
// fallbacks at depth 2, so a family's method always wins and every RPC no
// family serves yet answers Unimplemented.
type runtimeServer struct {
	*runtimeinfo.Service
	unimplementedRuntime
}

type unimplementedRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
}

func newRuntimeServer(info *runtimeinfo.Service) *runtimeServer {
	return &runtimeServer{Service: info}
}

// imageServer assembles the ImageService the same way.
type imageServer struct {
	*serverimage.Service
	unimplementedImage
}

type unimplementedImage struct {
	runtimeapi.UnimplementedImageServiceServer
}

func newImageServer(img *serverimage.Service) *imageServer { return &imageServer{Service: img} }
