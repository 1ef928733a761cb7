package loader

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// The branch-free scan agrees with a plain one, value by value, for every
// length around its 8- and 32-byte strides and any place of a NaN or infinity.
func TestFirstNonFinite(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 40; n++ {
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			for at := -1; at < n; at++ {
				b := make([]byte, 4*n)
				for i := 0; i < n; i++ {
					v := float32(rng.NormFloat64() * 1e30)
					if i == at {
						v = bad
					}
					binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
				}
				if got := FirstNonFinite(b); got != at {
					t.Fatalf("%d values, %v at %d: FirstNonFinite says %d", n, bad, at, got)
				}
			}
		}
	}
}
