package store

import (
	"crypto/rand"
	"encoding/hex"
)

// NewID returns a fresh 64-hex object id, as containerd's: the key of a
// sandbox's or container's records.
func NewID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
