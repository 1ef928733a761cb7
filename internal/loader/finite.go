package loader

import "encoding/binary"

// FirstNonFinite returns the index of the first little-endian float32 in b that
// is infinite or NaN (all exponent bits set), or -1 when every one is finite: how
// both transports check binary FP32 inputs before they reach a model.
func FirstNonFinite(b []byte) int {
	// Two values a step, without a branch: a lane's exponent bits plus one at the
	// exponent's lowest bit carry into the lane's top bit only when all of them
	// were set, and never into the next lane.
	const exp, low, top = 0x7f8000007f800000, 0x0080000000800000, 0x8000000080000000
	le := binary.LittleEndian
	var acc uint64
	i := 0
	for ; i+32 <= len(b); i += 32 {
		c := b[i : i+32]
		acc |= (le.Uint64(c)&exp + low) | (le.Uint64(c[8:])&exp + low) | (le.Uint64(c[16:])&exp + low) | (le.Uint64(c[24:])&exp + low)
	}
	for ; i+8 <= len(b); i += 8 {
		acc |= le.Uint64(b[i:])&exp + low
	}
	if i+4 <= len(b) {
		acc |= uint64(le.Uint32(b[i:]))&exp + low
	}
	if acc&top == 0 {
		return -1
	}
	for j := 0; j+4 <= len(b); j += 4 {
		if le.Uint32(b[j:])&0x7f800000 == 0x7f800000 {
			return j / 4
		}
	}
	return -1
}
