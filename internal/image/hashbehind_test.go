package image

import (
	"math/rand/v2"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestHashBehind: whatever the sizes of the writes, the digest is the one
// of the bytes written, and Stop ends the goroutine of a hash nobody reads.
func TestHashBehind(t *testing.T) {
	data := make([]byte, 3*hashChunk*hashChunks+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, tc := range []struct {
		name  string
		n     int   // bytes of data written
		sizes []int // write sizes, cycled
	}{
		{"nothing", 0, []int{1}},
		{"one byte", 1, []int{1}},
		{"tar headers", 64 << 10, []int{512}},
		{"exactly a chunk", hashChunk, []int{hashChunk}},
		{"a chunk and one", hashChunk + 1, []int{hashChunk}},
		{"more than in flight, odd sizes", len(data), []int{1, 4095, 128 << 10, 7, hashChunk + 3}},
		{"one big write", len(data), []int{len(data)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHashBehind(digest.SHA256)
			in := data[:tc.n]
			for i := 0; len(in) > 0; i++ {
				k := min(tc.sizes[i%len(tc.sizes)], len(in))
				if n, err := h.Write(in[:k]); n != k || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
				in = in[k:]
			}
			if got, want := h.Digest(), digest.FromBytes(data[:tc.n]); got != want {
				t.Errorf("digest %s, want %s", got, want)
			}
			if again := h.Digest(); again != digest.FromBytes(data[:tc.n]) {
				t.Errorf("second Digest %s", again)
			}
			h.Stop() // after Digest: a no-op
		})
	}
	t.Run("stopped unread", func(t *testing.T) {
		h := newHashBehind(digest.SHA256)
		h.Write(data)
		h.Stop()
		select {
		case <-h.done:
		default:
			t.Fatal("the hashing goroutine still runs after Stop")
		}
	})
}
