// Package v1 is the schema of berthd's TOML configuration file, version 1.
// Every key is documented in docs/config.md; default.toml holds the embedded
// defaults that `berthd config default` prints.
package v1

import (
	_ "embed"
	"fmt"
	"time"
)

// DefaultTOML is the embedded default configuration.
//
//go:embed default.toml
var DefaultTOML string

// Version is the only config schema version this berthd reads.
const Version = 1

// Config is the whole berthd configuration after defaults and drop-ins are merged.
type Config struct {
	// Version of the schema; 0 (absent) means Version.
	Version int `toml:"version" json:"version"`
	// Listen is the path of the CRI unix socket.
	Listen string `toml:"listen" json:"listen"`
	// SocketGroup, when set, is the group (name or numeric gid) that owns the
	// socket; the socket mode is 0660 either way.
	SocketGroup string `toml:"socket_group" json:"socket_group"`
	// RootDir holds persistent data: content store, snapshots, metadata.
	RootDir string `toml:"root_dir" json:"root_dir"`
	// StateDir holds runtime state: netns pins, supervisor socket, locks.
	StateDir string `toml:"state_dir" json:"state_dir"`
	// StateDirTmpfs lets berthd mount a tmpfs on StateDir when it is on
	// disk and holds nothing of this boot (internal/statedir).
	StateDirTmpfs bool `toml:"state_dir_tmpfs" json:"state_dir_tmpfs"`
	// CgroupDriver is who owns container cgroups: "systemd" (transient
	// scopes in the pod's slice), "cgroupfs" (plain directories), or
	// "auto" (systemd where systemd is init on a pure cgroup v2 node).
	// Resolved once at start (internal/cgroupdriver).
	CgroupDriver string `toml:"cgroup_driver" json:"cgroup_driver"`
	// AppArmorDefaultProfile names the AppArmor profile of RuntimeDefault
	// containers on an AppArmor host; berthd loads its embedded policy
	// under that name at start unless a profile of that name is loaded.
	// Empty: such containers run unconfined.
	AppArmorDefaultProfile string `toml:"apparmor_default_profile" json:"apparmor_default_profile"`
	// LogLevel is a logrus level: trace, debug, info, warn, error.
	LogLevel string `toml:"log_level" json:"log_level"`
	// LogFormat is text or json.
	LogFormat string `toml:"log_format" json:"log_format"`
	// SandboxImage is the pause image that holds a pod's namespaces.
	SandboxImage string `toml:"sandbox_image" json:"sandbox_image"`
	// DefaultRuntime names the [runtimes.<handler>] used for the empty
	// RuntimeClass handler.
	DefaultRuntime string `toml:"default_runtime" json:"default_runtime"`
	// MaxContainerLogLineSize splits longer container output lines into
	// partial (P) CRI log records.
	MaxContainerLogLineSize int `toml:"max_container_log_line_size" json:"max_container_log_line_size"`
	// CDISpecDirs are the directories of Container Device Interface specs,
	// in increasing priority, searched for the devices a container names
	// (CRI CDI_devices, cdi.k8s.io/ annotations).
	CDISpecDirs []string `toml:"cdi_spec_dirs" json:"cdi_spec_dirs"`

	// StreamServerAddress and StreamServerPort are where the exec, attach
	// and port-forward server listens (port 0: any free port).
	StreamServerAddress string `toml:"stream_server_address" json:"stream_server_address"`
	StreamServerPort    int    `toml:"stream_server_port" json:"stream_server_port"`
	// StreamIdleTimeout ends a streaming session idle that long.
	StreamIdleTimeout Duration `toml:"stream_idle_timeout" json:"stream_idle_timeout"`
	// StreamTLSCert and StreamTLSKey, both set, serve streams over TLS.
	StreamTLSCert string `toml:"stream_tls_cert" json:"stream_tls_cert"`
	StreamTLSKey  string `toml:"stream_tls_key" json:"stream_tls_key"`
	// MaxExecOutput caps ExecSync's stdout and stderr together, so the
	// reply fits kubelet's 16 MiB message limit.
	MaxExecOutput int `toml:"max_exec_output" json:"max_exec_output"`
	// MetricsAddress, when set, is the host:port of the Prometheus /metrics
	// HTTP endpoint; empty means no endpoint.
	MetricsAddress string `toml:"metrics_address" json:"metrics_address"`
	// CriuPath is the CRIU binary of checkpoint and restore; empty finds
	// "criu" on PATH. Its version is checked once, at start.
	CriuPath string `toml:"criu_path" json:"criu_path"`
	// CheckpointImages lets CreateContainer restore from a pulled OCI
	// checkpoint image. Off by default: the image's checkpointed CRI
	// config (its security context included) and process state are then
	// trusted as kubelet's, so whoever can push an image a pod names gets
	// the trust that archive paths give only to who can write on the node.
	CheckpointImages bool `toml:"checkpoint_images" json:"checkpoint_images"`

	Registry Registry `toml:"registry" json:"registry"`
	CNI      CNI      `toml:"cni" json:"cni"`
	NRI      NRI      `toml:"nri" json:"nri"`
	// Runtimes maps a RuntimeClass handler name (a DNS label) to its runtime.
	Runtimes map[string]Runtime `toml:"runtimes" json:"runtimes"`
}

// Registry configures image pulls.
type Registry struct {
	// ConfigPath is a directory of per-host hosts.toml files in containerd's
	// format (<host>/hosts.toml, _default/hosts.toml).
	ConfigPath string `toml:"config_path" json:"config_path"`
	// AuthFile is a Docker config.json with node-level credentials.
	AuthFile string `toml:"auth_file" json:"auth_file"`
	// MaxConcurrentDownloads bounds layer downloads across all pulls.
	MaxConcurrentDownloads int `toml:"max_concurrent_downloads" json:"max_concurrent_downloads"`
	// ImagePullProgressTimeout cancels a pull that moves no byte for this long.
	ImagePullProgressTimeout Duration `toml:"image_pull_progress_timeout" json:"image_pull_progress_timeout"`
	// ImagePolicy is the image signature policy file
	// (docs/image-policy.md); empty means every image is accepted.
	ImagePolicy string `toml:"image_policy" json:"image_policy"`
}

// CNI configures pod networking.
type CNI struct {
	// ConfDir is watched for network configs; the first in lexical order is
	// the default pod network.
	ConfDir string `toml:"conf_dir" json:"conf_dir"`
	// BinDirs are searched for plugin binaries, in order.
	BinDirs []string `toml:"bin_dirs" json:"bin_dirs"`
}

// NRI configures the Node Resource Interface: plugins that observe and may
// adjust pod and container lifecycle events (github.com/containerd/nri).
type NRI struct {
	// Enable starts the NRI adaptation with berthd.
	Enable bool `toml:"enable" json:"enable"`
	// SocketPath is where external plugins connect.
	SocketPath string `toml:"socket_path" json:"socket_path"`
	// PluginPath holds pre-installed plugins berthd launches at start;
	// PluginConfigPath their configuration drop-ins.
	PluginPath       string `toml:"plugin_path" json:"plugin_path"`
	PluginConfigPath string `toml:"plugin_config_path" json:"plugin_config_path"`
	// PluginRegistrationTimeout bounds a plugin's registration;
	// PluginRequestTimeout each request relayed to a plugin. A plugin that
	// misses it is dropped and the request goes on without it.
	PluginRegistrationTimeout Duration `toml:"plugin_registration_timeout" json:"plugin_registration_timeout"`
	PluginRequestTimeout      Duration `toml:"plugin_request_timeout" json:"plugin_request_timeout"`
}

// Runtime types.
const (
	RuntimeLibcontainer = "libcontainer"
	RuntimeOCI          = "oci"
)

// Runtime is one RuntimeClass handler.
type Runtime struct {
	// Type is "libcontainer" (in-process, the default) or "oci" (an external
	// runc-compatible binary).
	Type string `toml:"type" json:"type"`
	// RuntimePath is the binary of an "oci" runtime.
	RuntimePath string `toml:"runtime_path" json:"runtime_path,omitempty"`
	// RuntimeRoot is the runtime's state directory; empty means
	// <state_dir>/runtimes/<handler>.
	RuntimeRoot string `toml:"runtime_root" json:"runtime_root,omitempty"`
	// SandboxImage overrides the global sandbox_image for this handler.
	SandboxImage string `toml:"sandbox_image" json:"sandbox_image,omitempty"`
	// PrivilegedWithoutHostDevices keeps host devices out of privileged
	// containers of this handler.
	PrivilegedWithoutHostDevices bool `toml:"privileged_without_host_devices" json:"privileged_without_host_devices"`
	// AllowedAnnotations are annotation keys (a trailing * matches a prefix)
	// passed from the pod or container config into the OCI spec.
	AllowedAnnotations []string `toml:"allowed_annotations" json:"allowed_annotations,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("5m", "30s").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (like \"30s\" or \"5m\"): %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }
