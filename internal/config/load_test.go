package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeConfig lays out a main file and drop-ins in a temp dir and returns
// the main file's path.
func writeConfig(t *testing.T, main string, dropins map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "berth.toml")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if len(dropins) > 0 {
		if err := os.Mkdir(filepath.Join(dir, DropInDir), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range dropins {
			if err := os.WriteFile(filepath.Join(dir, DropInDir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return path
}

func TestLoadDefaults(t *testing.T) {
	l, err := Load(writeConfig(t, "", nil))
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	if c.Listen != "/run/berth/berth.sock" || c.RootDir != "/var/lib/berth" || c.StateDir != "/run/berth" {
		t.Errorf("paths: %q %q %q", c.Listen, c.RootDir, c.StateDir)
	}
	if c.DefaultRuntime != "runc" || c.Runtimes["runc"].Type != "libcontainer" {
		t.Errorf("default runtime: %q %+v", c.DefaultRuntime, c.Runtimes)
	}
	if c.Registry.ImagePullProgressTimeout.Duration != 5*time.Minute || c.Registry.MaxConcurrentDownloads != 3 {
		t.Errorf("registry: %+v", c.Registry)
	}
	if got := strings.Join(c.CNI.BinDirs, ","); got != "/opt/cni/bin,/usr/lib/cni" {
		t.Errorf("bin dirs %q", got)
	}
}

func TestLoadMerge(t *testing.T) {
	path := writeConfig(t, `
log_level = "debug"
[registry]
max_concurrent_downloads = 5
[runtimes.kata]
type = "oci"
runtime_path = "/usr/bin/kata"
runtime_root = "/run/kata"
`, map[string]string{
		// Lexical order: 10 before 20, so 20 wins where both set a key.
		"10-first.toml":  "log_level = \"warn\"\n[cni]\nbin_dirs = [\"/a\"]\n",
		"20-second.toml": "log_level = \"error\"\n[runtimes.kata]\ntype = \"oci\"\nruntime_path = \"/opt/kata\"\n",
		"ignored.conf":   "this is not toml = = =",
	})
	l, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	if c.LogLevel != "error" {
		t.Errorf("log_level %q, want the last drop-in's", c.LogLevel)
	}
	if c.Registry.MaxConcurrentDownloads != 5 || c.Registry.ImagePullProgressTimeout.Duration != 5*time.Minute {
		t.Errorf("registry merge lost a default or the file's value: %+v", c.Registry)
	}
	if len(c.CNI.BinDirs) != 1 || c.CNI.BinDirs[0] != "/a" {
		t.Errorf("bin_dirs %v", c.CNI.BinDirs)
	}
	kata := c.Runtimes["kata"]
	if kata.RuntimePath != "/opt/kata" || kata.RuntimeRoot != "" {
		t.Errorf("a drop-in's runtime table must replace the handler whole: %+v", kata)
	}
	if _, ok := c.Runtimes["runc"]; !ok {
		t.Errorf("default handler lost: %v", c.Runtimes)
	}
	if len(l.Files) != 3 {
		t.Errorf("files %v", l.Files)
	}
	if got := l.Origin("runtimes.kata.runtime_path"); !strings.HasSuffix(got, "20-second.toml") {
		t.Errorf("origin %q", got)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		main    string
		dropins map[string]string
		want    []string // substrings of the error
	}{
		{"unknown key", "lsiten = \"/x\"", nil, []string{"berth.toml", `"lsiten"`, "unknown key"}},
		{"unknown nested key", "[registry]\nmirrors = 1", nil, []string{`"registry.mirrors"`}},
		{"bad type", "listen = 5", nil, []string{"berth.toml", "listen", "incompatible types"}},
		{"bad duration", "[registry]\nimage_pull_progress_timeout = \"soon\"", nil, []string{"image_pull_progress_timeout", "not a duration"}},
		{"syntax", "listen = ", nil, []string{"berth.toml", "line 1"}},
		{"handler not a DNS label", "[runtimes.\"Bad_Name\"]\ntype = \"libcontainer\"", nil, []string{"berth.toml", `"runtimes.Bad_Name"`, "not a DNS label"}},
		{"default names no handler", "default_runtime = \"kata\"", nil, []string{`"default_runtime"`, "kata", "configured: runc"}},
		{"oci without path", "[runtimes.x]\ntype = \"oci\"", nil, []string{`"runtimes.x.runtime_path"`}},
		{"bad runtime type", "[runtimes.x]\ntype = \"vm\"", nil, []string{`"runtimes.x.type"`, `"vm"`}},
		{"relative root", "root_dir = \"var/lib\"", nil, []string{`"root_dir"`, "absolute"}},
		{"bad level", "log_level = \"loud\"", nil, []string{`"log_level"`}},
		{"bad format", "log_format = \"xml\"", nil, []string{`"log_format"`}},
		{"bad cgroup driver", "cgroup_driver = \"Systemd\"", nil, []string{`"cgroup_driver"`, "auto, systemd or cgroupfs"}},
		{"zero downloads", "[registry]\nmax_concurrent_downloads = 0", nil, []string{"max_concurrent_downloads"}},
		{"future version", "version = 2", nil, []string{`"version"`, "not supported"}},
		{"metrics address without port", "metrics_address = \"127.0.0.1\"", nil, []string{`"metrics_address"`, "not host:port"}},
		{"metrics address port not a number", "metrics_address = \"127.0.0.1:http\"", nil, []string{`"metrics_address"`, "1 to 65535"}},
		{"metrics address port zero", "metrics_address = \"127.0.0.1:0\"", nil, []string{`"metrics_address"`, "1 to 65535"}},
		{"metrics address port too big", "metrics_address = \"[::1]:65536\"", nil, []string{`"metrics_address"`, "1 to 65535"}},
		{"nri relative socket", "[nri]\nsocket_path = \"nri.sock\"", nil, []string{`"nri.socket_path"`, "absolute"}},
		{"nri socket path too long", "[nri]\nsocket_path = \"/" + strings.Repeat("n", 120) + "\"", nil, []string{`"nri.socket_path"`, "107 bytes"}},
		{"nri zero request timeout", "[nri]\nplugin_request_timeout = \"0s\"", nil, []string{`"nri.plugin_request_timeout"`, "positive"}},
		{"nri negative registration timeout", "[nri]\nplugin_registration_timeout = \"-1s\"", nil, []string{`"nri.plugin_registration_timeout"`, "positive"}},
		{"error in drop-in names the drop-in", "", map[string]string{"50-x.toml": "sandbox_imag = \"p\""}, []string{"50-x.toml", `"sandbox_imag"`}},
		{"validation names the drop-in that set it", "", map[string]string{"50-x.toml": "log_format = \"yaml\""}, []string{"50-x.toml", "log_format"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.main, tc.dropins))
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadExplicitMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.toml")); err == nil {
		t.Fatal("a --config that does not exist must be an error")
	}
}

func TestMetricsAddressAccepted(t *testing.T) {
	for _, addr := range []string{"", "127.0.0.1:9411", "[::1]:9411", ":9411", "localhost:9411"} {
		l, err := Load(writeConfig(t, "metrics_address = \""+addr+"\"", nil))
		if err != nil {
			t.Errorf("metrics_address %q: %v", addr, err)
			continue
		}
		if l.Config.MetricsAddress != addr {
			t.Errorf("metrics_address %q loaded as %q", addr, l.Config.MetricsAddress)
		}
	}
	l, err := Load(writeConfig(t, "", nil))
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.MetricsAddress != "" {
		t.Errorf("default metrics_address %q, want off", l.Config.MetricsAddress)
	}
}

func TestIsDNSLabel(t *testing.T) {
	for s, want := range map[string]bool{
		"runc": true, "kata-qemu": true, "a": true, "0x": true,
		"": false, "Runc": false, "-a": false, "a-": false, "a_b": false, "a.b": false,
		strings.Repeat("a", 63): true, strings.Repeat("a", 64): false,
	} {
		if IsDNSLabel(s) != want {
			t.Errorf("IsDNSLabel(%q) = %v", s, !want)
		}
	}
}

func TestNRIDefaults(t *testing.T) {
	l, err := Load(writeConfig(t, "", nil))
	if err != nil {
		t.Fatal(err)
	}
	n := l.Config.NRI
	// On by default, with containerd's paths and timeouts, so plugins
	// written for containerd find berthd where they look.
	if !n.Enable || n.SocketPath != "/var/run/nri/nri.sock" || n.PluginPath != "/opt/nri/plugins" ||
		n.PluginConfigPath != "/etc/nri/conf.d" || n.PluginRegistrationTimeout.Duration != 5*time.Second ||
		n.PluginRequestTimeout.Duration != 2*time.Second {
		t.Errorf("nri defaults: %+v", n)
	}
	// Off, the rest of the table is not checked.
	if _, err := Load(writeConfig(t, "[nri]\nenable = false\nsocket_path = \"rel\"", nil)); err != nil {
		t.Errorf("disabled nri with a relative socket: %v", err)
	}
}
