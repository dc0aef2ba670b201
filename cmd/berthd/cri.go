package main

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	servercontainer "github.com/berth-cri/berth/internal/server/container"
	serverevents "github.com/berth-cri/berth/internal/server/events"
	serverimage "github.com/berth-cri/berth/internal/server/image"
	"github.com/berth-cri/berth/internal/server/runtimeinfo"
	serversandbox "github.com/berth-cri/berth/internal/server/sandbox"
	serverstats "github.com/berth-cri/berth/internal/server/stats"
	"github.com/berth-cri/berth/internal/server/streaming"
)

// Each RPC family's service is called Service in its own package; these
// aliases give the embedded fields distinct names.
type (
	infoService      = runtimeinfo.Service
	sandboxService   = serversandbox.Service
	imageService     = serverimage.Service
	containerService = servercontainer.Service
	statsService     = serverstats.Service
	eventsService    = serverevents.Service
	streamingService = streaming.Service
)

// runtimeServer assembles the RuntimeService from one service per RPC
// family. The families are embedded at depth 1 and the Unimplemented
// fallbacks at depth 2, so a family's method always wins and every RPC no
// family serves yet answers Unimplemented.
type runtimeServer struct {
	*infoService
	*sandboxService
	*containerService
	*statsService
	*eventsService
	*streamingService
	unimplementedRuntime
}

type unimplementedRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
}

// runtimeParts are the RuntimeService families.
type runtimeParts struct {
	info       *runtimeinfo.Service
	sandboxes  *serversandbox.Service
	containers *servercontainer.Service
	stats      *serverstats.Service
	events     *serverevents.Service
	streaming  *streaming.Service
}

func newRuntimeServer(p runtimeParts) *runtimeServer {
	return &runtimeServer{infoService: p.info, sandboxService: p.sandboxes, containerService: p.containers,
		statsService: p.stats, eventsService: p.events, streamingService: p.streaming}
}

// imageServer assembles the ImageService the same way.
type imageServer struct {
	*imageService
	unimplementedImage
}

type unimplementedImage struct {
	runtimeapi.UnimplementedImageServiceServer
}

func newImageServer(img *serverimage.Service) *imageServer { return &imageServer{imageService: img} }
