package config

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	"github.com/berth-cri/berth/internal/apparmor"
)

// dnsLabel is RFC 1123's label, which Kubernetes requires of RuntimeClass
// handler names.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// IsDNSLabel reports whether s may name a runtime handler.
func IsDNSLabel(s string) bool { return dnsLabel.MatchString(s) }

func (l *Loaded) validate() error {
	c := l.Config
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("config %s: key %q: %s", l.Origin(key), key, fmt.Sprintf(format, args...))
	}
	if c.Version != 0 && c.Version != configv1.Version {
		return bad("version", "version %d is not supported (this berthd reads version %d)", c.Version, configv1.Version)
	}
	for key, p := range map[string]string{"listen": c.Listen, "root_dir": c.RootDir, "state_dir": c.StateDir} {
		if !filepath.IsAbs(p) {
			return bad(key, "must be an absolute path, got %q", p)
		}
	}
	switch c.CgroupDriver {
	case "auto", "systemd", "cgroupfs":
	default:
		return bad("cgroup_driver", "%q is not auto, systemd or cgroupfs", c.CgroupDriver)
	}
	if p := c.AppArmorDefaultProfile; p != "" && !apparmor.ValidName(p) {
		return bad("apparmor_default_profile", "%q is not a profile name (letters, digits, '.', '_', '-')", p)
	}
	if _, err := logrus.ParseLevel(c.LogLevel); err != nil {
		return bad("log_level", "%q is not one of trace, debug, info, warn, error, fatal, panic", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return bad("log_format", "%q is neither text nor json", c.LogFormat)
	}
	if c.SandboxImage == "" {
		return bad("sandbox_image", "must not be empty")
	}
	if c.MaxContainerLogLineSize < 1024 {
		return bad("max_container_log_line_size", "must be at least 1024 bytes, got %d", c.MaxContainerLogLineSize)
	}
	for i, d := range c.CDISpecDirs {
		if !filepath.IsAbs(d) {
			return bad("cdi_spec_dirs", "entry %d must be an absolute path, got %q", i, d)
		}
	}
	if net.ParseIP(c.StreamServerAddress) == nil {
		return bad("stream_server_address", "%q is not an IP address", c.StreamServerAddress)
	}
	if c.StreamServerPort < 0 || c.StreamServerPort > 65535 {
		return bad("stream_server_port", "%d is not a port (0 picks a free one)", c.StreamServerPort)
	}
	if (c.StreamTLSCert == "") != (c.StreamTLSKey == "") {
		return bad("stream_tls_cert", "stream_tls_cert and stream_tls_key go together")
	}
	if c.MaxExecOutput < 1024 || c.MaxExecOutput > 16<<20 {
		return bad("max_exec_output", "must be between 1024 and 16777216 bytes (kubelet's message limit), got %d", c.MaxExecOutput)
	}
	if err := validateHostPort(c.MetricsAddress); err != nil {
		return bad("metrics_address", "%v", err)
	}
	if c.CriuPath != "" && !filepath.IsAbs(c.CriuPath) {
		return bad("criu_path", "%q is not an absolute path", c.CriuPath)
	}
	if c.Registry.MaxConcurrentDownloads < 1 {
		return bad("registry.max_concurrent_downloads", "must be at least 1, got %d", c.Registry.MaxConcurrentDownloads)
	}
	if c.Registry.ImagePolicy != "" && !filepath.IsAbs(c.Registry.ImagePolicy) {
		return bad("registry.image_policy", "must be an absolute path, got %q", c.Registry.ImagePolicy)
	}
	if c.Registry.ImagePullProgressTimeout.Duration < 0 {
		return bad("registry.image_pull_progress_timeout", "must not be negative")
	}
	if c.CNI.ConfDir == "" {
		return bad("cni.conf_dir", "must not be empty")
	}
	if err := validateNRI(c.NRI); err != nil {
		return bad("nri."+err.key, "%s", err.msg)
	}
	if len(c.Runtimes) == 0 {
		return bad("runtimes", "at least one runtime handler must be configured")
	}
	for _, name := range sortedKeys(c.Runtimes) {
		key := "runtimes." + name
		if !IsDNSLabel(name) {
			return bad(key, "handler name %q is not a DNS label (lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit)", name)
		}
		rt := c.Runtimes[name]
		switch rt.Type {
		case configv1.RuntimeLibcontainer:
			if rt.RuntimePath != "" {
				return bad(key+".runtime_path", "only a runtime of type %q takes a runtime_path", configv1.RuntimeOCI)
			}
		case configv1.RuntimeOCI:
			if !filepath.IsAbs(rt.RuntimePath) {
				return bad(key+".runtime_path", "a runtime of type %q needs the absolute path of its binary, got %q", configv1.RuntimeOCI, rt.RuntimePath)
			}
		default:
			return bad(key+".type", "%q is not a runtime type (want %q or %q)", rt.Type, configv1.RuntimeLibcontainer, configv1.RuntimeOCI)
		}
		if rt.RuntimeRoot != "" && !filepath.IsAbs(rt.RuntimeRoot) {
			return bad(key+".runtime_root", "must be an absolute path, got %q", rt.RuntimeRoot)
		}
	}
	if _, ok := c.Runtimes[c.DefaultRuntime]; !ok {
		return bad("default_runtime", "%q names no configured handler (configured: %s)", c.DefaultRuntime, strings.Join(sortedKeys(c.Runtimes), ", "))
	}
	return nil
}

// keyError is a problem with one key of a table.
type keyError struct{ key, msg string }

// validateNRI checks the [nri] table; with NRI off, nothing in it is used.
func validateNRI(n configv1.NRI) *keyError {
	if !n.Enable {
		return nil
	}
	for key, p := range map[string]string{"socket_path": n.SocketPath, "plugin_path": n.PluginPath, "plugin_config_path": n.PluginConfigPath} {
		if !filepath.IsAbs(p) {
			return &keyError{key, fmt.Sprintf("must be an absolute path, got %q", p)}
		}
	}
	// sun_path holds 108 bytes with the terminating NUL.
	if len(n.SocketPath) > 107 {
		return &keyError{"socket_path", fmt.Sprintf("%q is longer than a unix socket path may be (107 bytes)", n.SocketPath)}
	}
	if n.PluginRegistrationTimeout.Duration <= 0 {
		return &keyError{"plugin_registration_timeout", "must be positive"}
	}
	if n.PluginRequestTimeout.Duration <= 0 {
		return &keyError{"plugin_request_timeout", "must be positive"}
	}
	return nil
}

// validateHostPort accepts "" (off) or host:port with a numeric port; an
// empty host means every interface.
func validateHostPort(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (like \"127.0.0.1:9411\"): %v", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// HandlerNames lists the configured handlers, sorted, for error messages.
func HandlerNames(c *configv1.Config) []string { return sortedKeys(c.Runtimes) }
