package scorerapi

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// codec is grpc-go's proto codec with a cheaper Unmarshal for messages that
// come in several HTTP/2 frames (a 256-row request is three): grpc-go gathers
// them into a pooled buffer it clears first, a tenth of the server's CPU at
// 256 rows; this gathers them into a buffer of its own, overwritten whole, and
// reads a message of one frame in place. proto.Unmarshal copies what it keeps.
type codec struct{ encoding.CodecV2 }

func newCodec() codec { return codec{encoding.GetCodecV2(protoenc.Name)} }

// gatherPool holds the buffers of messages up to 1 MiB.
var gatherPool = sync.Pool{New: func() any { return new([]byte) }}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("failed to unmarshal, message is %T, want proto.Message", v)
	}
	if len(data) == 1 {
		return proto.Unmarshal(data[0].ReadOnlyData(), m)
	}
	bp := gatherPool.Get().(*[]byte)
	buf := (*bp)[:0]
	for _, b := range data {
		buf = append(buf, b.ReadOnlyData()...)
	}
	err := proto.Unmarshal(buf, m)
	if cap(buf) <= 1<<20 {
		*bp = buf
		gatherPool.Put(bp)
	}
	return err
}
