package oci

import (
	"slices"
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestProcessArgs(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/ep", "-x"}, Cmd: []string{"cmd1", "cmd2"}}
	tests := []struct {
		name          string
		command, args []string
		img           ocispec.ImageConfig
		want          []string
		err           error
	}{
		{"neither: entrypoint+cmd", nil, nil, img, []string{"/ep", "-x", "cmd1", "cmd2"}, nil},
		{"command drops entrypoint and cmd", []string{"/bin/sh"}, nil, img, []string{"/bin/sh"}, nil},
		{"command and args", []string{"/bin/sh"}, []string{"-c", "true"}, img, []string{"/bin/sh", "-c", "true"}, nil},
		{"only args replace cmd", nil, []string{"a1"}, img, []string{"/ep", "-x", "a1"}, nil},
		{"only args, no entrypoint", nil, []string{"/bin/true"}, ocispec.ImageConfig{Cmd: []string{"x"}}, []string{"/bin/true"}, nil},
		{"image cmd only", nil, nil, ocispec.ImageConfig{Cmd: []string{"/c"}}, []string{"/c"}, nil},
		{"nothing at all", nil, nil, ocispec.ImageConfig{}, nil, errdefs.ErrInvalidArgument},
		{"empty argv0", []string{""}, nil, img, nil, errdefs.ErrInvalidArgument},
		{"NUL in arg", []string{"/bin/sh", "a\x00b"}, nil, img, nil, errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := processArgs(&runtimeapi.ContainerConfig{Command: tt.command, Args: tt.args}, tt.img)
			checkErr(t, err, tt.err, "")
			if !slices.Equal(got, tt.want) {
				t.Fatalf("args = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestProcessEnv(t *testing.T) {
	kv := func(k, v string) *runtimeapi.KeyValue { return &runtimeapi.KeyValue{Key: k, Value: []byte(v)} }
	tests := []struct {
		name     string
		img      []string
		envs     []*runtimeapi.KeyValue
		hostname string
		want     []string
		err      error
	}{
		{"defaults PATH and HOSTNAME", nil, nil, "web-0", []string{"PATH=" + DefaultPath, "HOSTNAME=web-0"}, nil},
		{"image PATH kept", []string{"PATH=/x", "A=1"}, nil, "", []string{"PATH=/x", "A=1"}, nil},
		{"CRI overrides by key in place", []string{"A=1", "B=2"}, []*runtimeapi.KeyValue{kv("A", "9"), kv("C", "3")}, "h",
			[]string{"A=9", "B=2", "PATH=" + DefaultPath, "HOSTNAME=h", "C=3"}, nil},
		{"CRI may override HOSTNAME", nil, []*runtimeapi.KeyValue{kv("HOSTNAME", "x")}, "h", []string{"PATH=" + DefaultPath, "HOSTNAME=x"}, nil},
		{"bytes value with '=' and non-UTF-8", nil, []*runtimeapi.KeyValue{kv("B", "a=b\xff")}, "", []string{"PATH=" + DefaultPath, "B=a=b\xff"}, nil},
		{"empty value", nil, []*runtimeapi.KeyValue{kv("E", "")}, "", []string{"PATH=" + DefaultPath, "E="}, nil},
		{"broken image entry skipped", []string{"=x", "OK=1"}, nil, "", []string{"OK=1", "PATH=" + DefaultPath}, nil},
		{"empty key", nil, []*runtimeapi.KeyValue{kv("", "v")}, "", nil, errdefs.ErrInvalidArgument},
		{"key with =", nil, []*runtimeapi.KeyValue{kv("A=B", "v")}, "", nil, errdefs.ErrInvalidArgument},
		{"NUL in value", nil, []*runtimeapi.KeyValue{kv("A", "v\x00")}, "", nil, errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := processEnv(&runtimeapi.ContainerConfig{Envs: tt.envs}, ocispec.ImageConfig{Env: tt.img}, tt.hostname)
			checkErr(t, err, tt.err, "envs")
			if !slices.Equal(got, tt.want) {
				t.Fatalf("env = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWorkingDir(t *testing.T) {
	tests := []struct {
		cri, img, want string
		err            error
	}{
		{"", "", "/", nil},
		{"", "/srv", "/srv", nil},
		{"/work/", "/srv", "/work", nil},
		{"rel", "", "", errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		got, err := workingDir(&runtimeapi.ContainerConfig{WorkingDir: tt.cri}, ocispec.ImageConfig{WorkingDir: tt.img})
		checkErr(t, err, tt.err, "")
		if got != tt.want {
			t.Errorf("workingDir(%q, %q) = %q, want %q", tt.cri, tt.img, got, tt.want)
		}
	}
}

func TestStopSignal(t *testing.T) {
	tests := []struct {
		name string
		cri  runtimeapi.Signal
		img  string
		want syscall.Signal
		err  error
	}{
		{"default SIGTERM", 0, "", syscall.SIGTERM, nil},
		{"image name", 0, "SIGQUIT", syscall.SIGQUIT, nil},
		{"image short name", 0, "usr1", syscall.SIGUSR1, nil},
		{"image number", 0, "9", syscall.SIGKILL, nil},
		{"image RTMIN+3", 0, "RTMIN+3", 37, nil},
		{"image SIGRTMAX-2", 0, "SIGRTMAX-2", 62, nil},
		{"CRI wins over image", runtimeapi.Signal_SIGNAL_SIGINT, "SIGQUIT", syscall.SIGINT, nil},
		{"CRI RTMIN+3", runtimeapi.Signal_SIGNAL_SIGRTMINPLUS3, "", 37, nil},
		{"CRI RTMAX-1", runtimeapi.Signal_SIGNAL_SIGRTMAXMINUS1, "", 63, nil},
		{"CRI SIGRTMAX", runtimeapi.Signal_SIGNAL_SIGRTMAX, "", 64, nil},
		{"CRI SIGCLD alias", runtimeapi.Signal_SIGNAL_SIGCLD, "", syscall.SIGCHLD, nil},
		{"CRI unknown enum", 999, "", 0, errdefs.ErrInvalidArgument},
		{"image junk", 0, "SIGFOO", 0, errdefs.ErrInvalidArgument},
		{"image out of range", 0, "65", 0, errdefs.ErrInvalidArgument},
		{"image RTMIN+40", 0, "RTMIN+40", 0, errdefs.ErrInvalidArgument},
		{"offset on plain signal", 0, "TERM+1", 0, errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := StopSignal(&runtimeapi.ContainerConfig{StopSignal: tt.cri}, ocispec.ImageConfig{StopSignal: tt.img})
			checkErr(t, err, tt.err, "")
			if got != tt.want {
				t.Fatalf("signal = %d, want %d", got, tt.want)
			}
		})
	}
	// Every CRI enum value maps to a signal.
	for v, name := range runtimeapi.Signal_name {
		if v == 0 {
			continue
		}
		if _, err := StopSignal(&runtimeapi.ContainerConfig{StopSignal: runtimeapi.Signal(v)}, ocispec.ImageConfig{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestContainerSpecProcess(t *testing.T) {
	in := testInput(t)
	in.Config.Tty, in.Config.Stdin, in.Config.StdinOnce = true, true, true
	in.Config.Args = []string{"run"}
	res, err := ContainerSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Spec.Process
	if !p.Terminal || !res.TTY || !res.Stdin || !res.StdinOnce {
		t.Errorf("tty/stdin not passed: %+v", res)
	}
	if !slices.Equal(p.Args, []string{"/entry", "run"}) || p.Cwd != "/srv" {
		t.Errorf("args %q cwd %q", p.Args, p.Cwd)
	}
	if !slices.Contains(p.Env, "HOSTNAME=web-0") || res.Spec.Hostname != "" {
		t.Errorf("env %q hostname %q: want HOSTNAME env and no spec hostname", p.Env, res.Spec.Hostname)
	}
	if res.StopSignal != syscall.SIGTERM {
		t.Errorf("stop signal %d", res.StopSignal)
	}
}
