package oci

import "strings"

// Annotations berth itself puts in specs, with containerd's names: runtimes
// such as runsc (gVisor) use them to group a pod's containers.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationSandboxLogDir    = "io.kubernetes.cri.sandbox-log-directory"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"

	ContainerTypeSandbox   = "sandbox"
	ContainerTypeContainer = "container"
)

// Handler holds the RuntimeClass handler options that shape specs (a subset
// of api/config/v1.Runtime).
type Handler struct {
	// PrivilegedWithoutHostDevices keeps host devices out of privileged
	// containers.
	PrivilegedWithoutHostDevices bool
	// AllowedAnnotations are the pod/container annotation keys copied into
	// the spec; a trailing "*" matches a prefix.
	AllowedAnnotations []string
}

func (h Handler) allowed(key string) bool {
	for _, a := range h.AllowedAnnotations {
		if p, ok := strings.CutSuffix(a, "*"); ok {
			if strings.HasPrefix(key, p) {
				return true
			}
		} else if a == key {
			return true
		}
	}
	return false
}

// specAnnotations copies the allowed keys of each source (later sources win)
// and then berth's own, which a pod can therefore never spoof.
func specAnnotations(h Handler, own map[string]string, sources ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, src := range sources {
		for k, v := range src {
			if h.allowed(k) {
				out[k] = v
			}
		}
	}
	for k, v := range own {
		out[k] = v
	}
	return out
}
