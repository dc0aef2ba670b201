package server

import "sync/atomic"

// Readiness gates the CRI until start-up recovery is done: until then only
// the methods kubelet needs to decide whether to wait (Version, Status,
// RuntimeConfig) and some image calls (alwaysOpen) answer, and the rest get
// Unavailable. kubelet aborts its
// own start if Version fails, so Version must never wait.
type Readiness struct {
	ready atomic.Bool
}

// SetReady opens the gate. It never closes again.
func (r *Readiness) SetReady() { r.ready.Store(true) }

// Ready reports whether recovery is done.
func (r *Readiness) Ready() bool { return r.ready.Load() }

// alwaysOpen are the full gRPC method names served before recovery ends.
// The image store is loaded before the socket opens, so image calls that
// cannot disturb an image in use answer too (kubelet's image client checks
// the connection with them); RemoveImage waits, since containers claim
// their images during recovery.
var alwaysOpen = map[string]bool{
	"/runtime.v1.RuntimeService/Version":       true,
	"/runtime.v1.RuntimeService/Status":        true,
	"/runtime.v1.RuntimeService/RuntimeConfig": true,
	"/runtime.v1.ImageService/ImageFsInfo":     true,
	"/runtime.v1.ImageService/ImageStatus":     true,
	"/runtime.v1.ImageService/ListImages":      true,
	"/runtime.v1.ImageService/StreamImages":    true,
	"/runtime.v1.ImageService/PullImage":       true,
}
