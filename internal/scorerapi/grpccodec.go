package scorerapi

import (
	"fmt"
	"unsafe"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/modelops/modelops/internal/scorerapi/inferencepb"
)

// codec is grpc-go's proto codec, but a ModelInferRequest's raw input
// contents are read in place. proto.Unmarshal copies every bytes field into
// an allocation of its own, and a 256-row request's raw contents (40 KB) come
// in several HTTP/2 frames that must be gathered first: two copies and two
// buffers. Here the frames are gathered once, into a buffer the message then
// owns (the garbage collector frees it with the message), raw_input_contents
// alias it, and protobuf decodes every other field from what remains.
type codec struct{ encoding.CodecV2 }

func newCodec() codec { return codec{encoding.GetCodecV2(protoenc.Name)} }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if req, ok := v.(*inferencepb.ModelInferRequest); ok {
		return unmarshalInferRequest(gatherAligned(data), req)
	}
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("failed to unmarshal, message is %T, want proto.Message", v)
	}
	if len(data) == 1 {
		return proto.Unmarshal(data[0].ReadOnlyData(), m)
	}
	return proto.Unmarshal(data.Materialize(), m)
}

// rawInputContentsField is raw_input_contents' field number in
// grpc_predict_v2.proto.
const rawInputContentsField protowire.Number = 7

// unmarshalInferRequest decodes buf into req as proto.Unmarshal does, except
// that req.RawInputContents alias buf, which req then owns. The other
// top-level fields, a few hundred bytes, are gathered and left to protobuf,
// so every field but that one is decoded by the generated code.
func unmarshalInferRequest(buf []byte, req *inferencepb.ModelInferRequest) error {
	var rest []byte
	var raw [][]byte
	for b := buf; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return proto.Unmarshal(buf, req) // protobuf's own error for a malformed message
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return proto.Unmarshal(buf, req)
		}
		if num == rawInputContentsField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			raw = append(raw, v[:len(v):len(v)])
		} else {
			rest = append(rest, b[:n+m]...)
		}
		b = b[n+m:]
	}
	if err := proto.Unmarshal(rest, req); err != nil {
		return err
	}
	req.RawInputContents = raw
	return nil
}

// gatherAligned copies data into a buffer of its own, placed so that the
// first raw_input_contents (when its tag and length are in the first frame, as
// they are when a client writes the fields in order) starts 8-byte aligned:
// then its FP32 values are read in place (rawFP32) rather than copied.
func gatherAligned(data mem.BufferSlice) []byte {
	off := -1
	if len(data) > 0 {
		off = rawContentsOffset(data[0].ReadOnlyData())
	}
	if off < 0 {
		return data.Materialize()
	}
	n := data.Len()
	buf := make([]byte, n+7)
	pad := int((8 - (uintptr(unsafe.Pointer(&buf[0]))+uintptr(off))%8) % 8)
	data.CopyTo(buf[pad : pad+n])
	return buf[pad : pad+n : pad+n]
}

// rawContentsOffset is where the value of the first raw_input_contents field
// starts in a message that begins with b, or -1 when b does not say.
func rawContentsOffset(b []byte) int {
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return -1
		}
		if num == rawInputContentsField && typ == protowire.BytesType {
			_, k := protowire.ConsumeVarint(b[off+n:])
			if k < 0 {
				return -1
			}
			return off + n + k
		}
		m := protowire.ConsumeFieldValue(num, typ, b[off+n:])
		if m < 0 {
			return -1
		}
		off += n + m
	}
	return -1
}
