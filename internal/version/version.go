// Package version is berthd's own version, set at link time by the Makefile
// (-X github.com/berth-cri/berth/internal/version.Version=...).
package version

// Version is berthd's semantic version.
var Version = "0.1.0-dev"

// Revision is the git commit berthd was built from, if known.
var Revision = ""

const (
	// RuntimeName is what Version reports as runtime_name.
	RuntimeName = "berth"
	// KubeletAPIVersion is VersionResponse.version: kubelet exits unless it is
	// exactly "0.1.0" (CRI-CONTRACT.md, Version and Status).
	KubeletAPIVersion = "0.1.0"
	// CRIAPIVersion is VersionResponse.runtime_api_version.
	CRIAPIVersion = "v1"
)
