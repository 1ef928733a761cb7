package loader

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// NativeLittleEndian: float32 values can be copied to and from the wire as
// they lie in memory.
var NativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// The binary tensors of both transports (OIP v2 REST's binary extension and
// gRPC's raw contents) are little-endian values of an OIP datatype; these read
// and write them.

// DatatypeSize is the bytes per value of a datatype the scorer reads (0 for
// the others).
func DatatypeSize(datatype string) int64 {
	switch datatype {
	case "FP32", "INT32":
		return 4
	case "FP64", "INT64":
		return 8
	case "BOOL":
		return 1
	}
	return 0
}

// DecodeLE reads little-endian values of datatype (b's length a multiple of
// the datatype's size), refusing non-finite floats and bools other than 0 or 1.
func DecodeLE(datatype string, b []byte) (any, error) {
	le := binary.LittleEndian
	switch datatype {
	case "FP32":
		out := make([]float32, len(b)/4)
		if NativeLittleEndian && len(out) > 0 {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), len(b)), b)
		} else {
			for i := range out {
				out[i] = math.Float32frombits(le.Uint32(b[4*i:]))
			}
		}
		if i := NonFinite32(out); i >= 0 {
			return nil, fmt.Errorf("value %d is not a finite number", i)
		}
		return out, nil
	case "FP64":
		out := make([]float64, len(b)/8)
		for i := range out {
			out[i] = math.Float64frombits(le.Uint64(b[8*i:]))
		}
		if i := NonFinite64(out); i >= 0 {
			return nil, fmt.Errorf("value %d is not a finite number", i)
		}
		return out, nil
	case "INT32":
		out := make([]int32, len(b)/4)
		for i := range out {
			out[i] = int32(le.Uint32(b[4*i:]))
		}
		return out, nil
	case "INT64":
		out := make([]int64, len(b)/8)
		for i := range out {
			out[i] = int64(le.Uint64(b[8*i:]))
		}
		return out, nil
	case "BOOL":
		out := make([]bool, len(b))
		for i, c := range b {
			if c > 1 {
				return nil, fmt.Errorf("value %d is byte %d, want 0 or 1", i, c)
			}
			out[i] = c == 1
		}
		return out, nil
	}
	return nil, fmt.Errorf("datatype %q: the scorer reads FP32, FP64, INT32, INT64 and BOOL", datatype)
}

// EncodeLE writes values little-endian.
func EncodeLE(data any) []byte {
	le := binary.LittleEndian
	switch d := data.(type) {
	case []float32:
		b := make([]byte, 4*len(d))
		if NativeLittleEndian && len(d) > 0 {
			copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), len(b)))
			return b
		}
		for i, f := range d {
			le.PutUint32(b[4*i:], math.Float32bits(f))
		}
		return b
	case []float64:
		b := make([]byte, 0, 8*len(d))
		for _, v := range d {
			b = le.AppendUint64(b, math.Float64bits(v))
		}
		return b
	case []int32:
		b := make([]byte, 0, 4*len(d))
		for _, v := range d {
			b = le.AppendUint32(b, uint32(v))
		}
		return b
	case []int64:
		b := make([]byte, 0, 8*len(d))
		for _, v := range d {
			b = le.AppendUint64(b, uint64(v))
		}
		return b
	case []bool:
		b := make([]byte, len(d))
		for i, v := range d {
			if v {
				b[i] = 1
			}
		}
		return b
	}
	return nil
}

// NonFinite32 is the index of the first NaN or infinity in v, or -1.
func NonFinite32(v []float32) int {
	for i, f := range v {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return i
		}
	}
	return -1
}

// NonFinite64 is the index of the first NaN or infinity in v, or -1.
func NonFinite64(v []float64) int {
	for i, f := range v {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return i
		}
	}
	return -1
}
