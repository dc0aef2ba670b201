package oci

import (
	"fmt"
	"path"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// DefaultPath is PATH when neither the image nor the CRI config sets one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// processArgs merges CRI command/args with the image entrypoint/cmd as
// Kubernetes defines it (kubelet's "command and args" rules):
//   - command set: command + args (the image's entrypoint and cmd are both
//     ignored);
//   - only args: image entrypoint + args;
//   - neither: image entrypoint + image cmd.
func processArgs(cfg *runtimeapi.ContainerConfig, img ocispec.ImageConfig) ([]string, error) {
	var args []string
	switch {
	case len(cfg.GetCommand()) > 0:
		args = append(append(args, cfg.GetCommand()...), cfg.GetArgs()...)
	case len(cfg.GetArgs()) > 0:
		args = append(append(args, img.Entrypoint...), cfg.GetArgs()...)
	default:
		args = append(append(args, img.Entrypoint...), img.Cmd...)
	}
	if len(args) == 0 || args[0] == "" {
		return nil, fmt.Errorf("no command: neither command/args nor the image's entrypoint/cmd give one: %w", errdefs.ErrInvalidArgument)
	}
	for i, a := range args {
		if hasNUL(a) {
			return nil, fmt.Errorf("argument %d contains a NUL byte: %w", i, errdefs.ErrInvalidArgument)
		}
	}
	return args, nil
}

// processEnv is the image env, overridden key by key by the CRI envs, with
// PATH defaulted and HOSTNAME set to the pod's hostname (what a process in
// the pod's UTS namespace sees).
func processEnv(cfg *runtimeapi.ContainerConfig, img ocispec.ImageConfig, hostname string) ([]string, error) {
	var keys []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	for _, kv := range img.Env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" || hasNUL(kv) {
			continue // an image's broken entry is not the pod's fault
		}
		set(k, v)
	}
	if _, ok := vals["PATH"]; !ok {
		set("PATH", DefaultPath)
	}
	if hostname != "" {
		set("HOSTNAME", hostname)
	}
	for i, kv := range cfg.GetEnvs() {
		// KeyValue.value is bytes since CRI 1.34; execve takes any bytes but NUL.
		k, v := kv.GetKey(), string(kv.GetValue())
		if k == "" || strings.ContainsRune(k, '=') || hasNUL(k) || hasNUL(v) {
			return nil, fmt.Errorf("envs[%d]: key %q: a key must be non-empty, without '=' or NUL, and the value without NUL: %w", i, k, errdefs.ErrInvalidArgument)
		}
		set(k, v)
	}
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, k+"="+vals[k])
	}
	return env, nil
}

// workingDir is the CRI working_dir, else the image's, else "/".
func workingDir(cfg *runtimeapi.ContainerConfig, img ocispec.ImageConfig) (string, error) {
	wd := cfg.GetWorkingDir()
	field := "working_dir"
	if wd == "" {
		wd, field = img.WorkingDir, "image WorkingDir"
	}
	if wd == "" {
		return "/", nil
	}
	if !path.IsAbs(wd) || hasNUL(wd) {
		return "", fmt.Errorf("%s %q must be an absolute path: %w", field, wd, errdefs.ErrInvalidArgument)
	}
	return path.Clean(wd), nil
}
