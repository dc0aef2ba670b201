// Package sandbox is the domain side of pod sandboxes: their namespaces,
// network, pause process, shared files and persisted state. The CRI edge is
// internal/server/sandbox.
package sandbox
