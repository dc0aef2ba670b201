package network

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport"
)

// binDirs are where Debian's and upstream's plugins live.
var binDirs = []string{"/opt/cni/bin", "/usr/lib/cni"}

func testLogger(t *testing.T) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(testWriter{t})
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func newTestManager(t *testing.T, confDir string, maxConf int) *Manager {
	t.Helper()
	m, err := New(Options{ConfDir: confDir, BinDirs: binDirs, CacheDir: t.TempDir(), PluginMaxConfNum: maxConf}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const (
	loList = `{"cniVersion":"1.0.0","name":"%s","plugins":[{"type":"loopback"}]}`
	loConf = `{"cniVersion":"1.0.0","name":"%s","type":"loopback"}`
)

func TestLoadConfigs(t *testing.T) {
	requireLoopback(t)
	named := func(format, name string) string { return strings.Replace(format, "%s", name, 1) }
	for _, tc := range []struct {
		name    string
		files   map[string]string
		maxConf int
		want    []string // network names, or nil for not ready
		reason  string   // part of the not-ready message
	}{
		{name: "missing dir", files: nil, want: nil, reason: "no network config found in"},
		{name: "lexical order, one network", maxConf: 1,
			files: map[string]string{"20-b.conflist": named(loList, "b"), "10-a.conflist": named(loList, "a")},
			want:  []string{"a"}},
		{name: "all networks", maxConf: 0,
			files: map[string]string{"20-b.conflist": named(loList, "b"), "10-a.conf": named(loConf, "a"), "30-c.json": named(loConf, "c")},
			want:  []string{"a", "b", "c"}},
		{name: "unparseable skipped", maxConf: 1,
			files: map[string]string{"05-broken.conflist": "{not json", "10-a.conflist": named(loList, "a"), "README": "x"},
			want:  []string{"a"}},
		{name: "only unparseable", maxConf: 1,
			files:  map[string]string{"05-broken.conflist": "{", "06-noname.conf": `{"type":"loopback"}`},
			reason: "no valid network config found in"},
		{name: "missing plugin fails, no fallback", maxConf: 1,
			files:  map[string]string{"10-a.conflist": `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"no-such-plugin"}]}`, "20-b.conflist": named(loList, "b")},
			reason: "no-such-plugin"},
		{name: "unsupported version", maxConf: 1,
			files:  map[string]string{"10-a.conflist": `{"cniVersion":"9.9.9","name":"a","plugins":[{"type":"loopback"}]}`},
			reason: "does not support config version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "net.d")
			if tc.files != nil {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				for n, c := range tc.files {
					writeFile(t, dir, n, c)
				}
			}
			m := newTestManager(t, dir, tc.maxConf)
			ready, reason, msg := m.Status()
			if tc.want == nil {
				if ready || reason != "NetworkPluginNotReady" || !strings.Contains(msg, tc.reason) {
					t.Fatalf("Status = %v, %q, %q; want not ready mentioning %q", ready, reason, msg, tc.reason)
				}
				_, err := m.Setup(t.Context(), Pod{ID: "x", NetNS: "/nonexistent"})
				if !errors.Is(err, errdefs.ErrUnavailable) {
					t.Fatalf("Setup while not ready = %v, want ErrUnavailable", err)
				}
				return
			}
			if !ready {
				t.Fatalf("not ready: %s", msg)
			}
			var got []string
			for _, n := range m.networks {
				got = append(got, n.Name)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("networks = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewOptions(t *testing.T) {
	if _, err := New(Options{ConfDir: "/x"}, testLogger(t)); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("New without BinDirs = %v, want ErrInvalidArgument", err)
	}
}

// requireLoopback needs the loopback plugin the tests' configs name.
func requireLoopback(t *testing.T) {
	t.Helper()
	_, err := os.Stat("/usr/lib/cni/loopback")
	testsupport.Require(t, err == nil, "needs the loopback CNI plugin (apt-get install containernetworking-plugins)")
}
