package reference

import (
	"github.com/opencontainers/go-digest"
)

// IsImageID reports whether s is an image ID rather than a name: either
// "sha256:<64 hex>" or a bare 64-hex string (critest removes images by the
// latter). The returned digest is always in the sha256:<hex> form.
func IsImageID(s string) (digest.Digest, bool) {
	if len(s) == 64 && isLowerHex(s) {
		return digest.NewDigestFromEncoded(digest.SHA256, s), true
	}
	const prefix = "sha256:"
	if len(s) == len(prefix)+64 && s[:len(prefix)] == prefix && isLowerHex(s[len(prefix):]) {
		return digest.Digest(s), true
	}
	return "", false
}

// isLowerHex reports whether s is only [0-9a-f]; digests are lowercase by
// the OCI spec, so an uppercase string is not an ID.
func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
