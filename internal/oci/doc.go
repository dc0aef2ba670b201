// Package oci turns CRI sandbox and container configs into OCI runtime specs.
//
// Everything here is a pure function of its inputs: the CRI request, the
// image config, the paths berthd prepared (rootfs, namespaces, pod files) and
// the Host facts probed once at start. The only file reads are the image's
// /etc/passwd and /etc/group (to resolve users), a Localhost seccomp profile,
// and CRI host paths (which must exist). Bad input is reported by wrapping
// errdefs.ErrInvalidArgument, or errdefs.ErrNotFound for a missing host path
// or user, with a message that names the CRI field.
//
// The consumer is runc's libcontainer (specconv.CreateLibcontainerConfig), or
// an external runc-compatible binary for "oci" handlers: specs stay within
// what both accept.
package oci
