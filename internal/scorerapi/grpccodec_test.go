package scorerapi

import (
	"testing"
	"unsafe"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/modelops/modelops/internal/scorerapi/inferencepb"
)

// fullInferRequest sets every field of a ModelInferRequest (the test below
// fails when the proto gains one it does not set), with raw contents of
// sizes that span frames.
func fullInferRequest() *pb.ModelInferRequest {
	raw := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i*7)
		}
		return b
	}
	return &pb.ModelInferRequest{
		ModelName: "calling-score", ModelVersion: "2", Id: "req-1",
		Parameters: map[string]*pb.InferParameter{
			"key":      {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "k"}},
			"timeout":  {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 5000}},
			"fallback": {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: false}},
		},
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "input", Datatype: "FP32", Shape: []int64{256, 39},
				Parameters: map[string]*pb.InferParameter{"p": {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "v"}}}},
			{Name: "ids", Datatype: "INT64", Shape: []int64{256, 1}},
			{Name: "empty", Datatype: "BOOL", Shape: []int64{0}},
		},
		Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{
			{Name: "output", Parameters: map[string]*pb.InferParameter{"binary_data": {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: true}}}},
		},
		RawInputContents: [][]byte{raw(256*39*4, 1), raw(256*8, 9), {}},
	}
}

func TestFullInferRequestSetsEveryField(t *testing.T) {
	m := fullInferRequest().ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if f := fields.Get(i); !m.Has(f) {
			t.Errorf("ModelInferRequest field %s is not set by fullInferRequest: set it, so the codec is tested on it", f.Name())
		}
	}
}

// frames splits b into buffers of at most size bytes, as HTTP/2 frames
// arrive.
func frames(b []byte, size int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > size {
		s = append(s, mem.SliceBuffer(b[:size]))
		b = b[size:]
	}
	return append(s, mem.SliceBuffer(b))
}

func TestCodecReadsInferRequestsAsProtobufDoes(t *testing.T) {
	full, err := proto.Marshal(fullInferRequest())
	if err != nil {
		t.Fatal(err)
	}
	// Raw contents before the other fields, an unknown field, and a field 7
	// of the wrong wire type (protobuf keeps it as unknown).
	odd := protowire.AppendTag(nil, rawInputContentsField, protowire.BytesType)
	odd = protowire.AppendBytes(odd, []byte{1, 2, 3})
	odd = protowire.AppendTag(odd, 99, protowire.VarintType)
	odd = protowire.AppendVarint(odd, 42)
	odd = protowire.AppendTag(odd, rawInputContentsField, protowire.VarintType)
	odd = protowire.AppendVarint(odd, 7)
	odd = append(odd, full...)
	small, _ := proto.Marshal(&pb.ModelInferRequest{ModelName: "m", RawInputContents: [][]byte{{0, 0, 128, 63}}})
	c := newCodec()
	for name, wire := range map[string][]byte{"full": full, "odd order": odd, "small": small, "empty": {}} {
		for _, size := range []int{16384, 1000, 7, len(wire) + 1} {
			var want pb.ModelInferRequest
			if err := proto.Unmarshal(wire, &want); err != nil {
				t.Fatal(err)
			}
			var got pb.ModelInferRequest
			if err := c.Unmarshal(frames(wire, size), &got); err != nil {
				t.Fatalf("%s in frames of %d: %v", name, size, err)
			}
			if !proto.Equal(&want, &got) || string(want.ProtoReflect().GetUnknown()) != string(got.ProtoReflect().GetUnknown()) {
				t.Errorf("%s in frames of %d: codec and proto.Unmarshal differ:\nproto: %.600s\ncodec: %.600s", name, size, prototext.Format(&want), prototext.Format(&got))
			}
			if len(got.RawInputContents) > 0 && len(got.RawInputContents[0]) > 0 && size >= 1000 {
				if p := uintptr(unsafe.Pointer(&got.RawInputContents[0][0])); p%8 != 0 {
					t.Errorf("%s in frames of %d: first raw contents at %#x, not 8-byte aligned", name, size, p)
				}
			}
		}
	}
	// A request of the full field set leaves nothing unknown.
	var got pb.ModelInferRequest
	if err := c.Unmarshal(frames(full, 16384), &got); err != nil {
		t.Fatal(err)
	}
	if u := got.ProtoReflect().GetUnknown(); len(u) != 0 {
		t.Errorf("unknown fields %x after decoding a full request", u)
	}
	var seen int
	got.ProtoReflect().Range(func(protoreflect.FieldDescriptor, protoreflect.Value) bool { seen++; return true })
	if want := got.ProtoReflect().Descriptor().Fields().Len(); seen != want {
		t.Errorf("%d fields set after decoding, want all %d", seen, want)
	}
}

func TestCodecRefusesWhatProtobufRefuses(t *testing.T) {
	full, _ := proto.Marshal(fullInferRequest())
	c := newCodec()
	for name, wire := range map[string][]byte{
		"truncated":      full[:len(full)-10],
		"bad tag":        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"length too big": append(protowire.AppendTag(nil, rawInputContentsField, protowire.BytesType), 0xff, 0x01, 1),
		"bad inner name": protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xff, 0xfe}),
	} {
		var want, got pb.ModelInferRequest
		werr := proto.Unmarshal(wire, &want)
		gerr := c.Unmarshal(frames(wire, 5), &got)
		if werr == nil || gerr == nil {
			t.Errorf("%s: proto.Unmarshal: %v, codec: %v; want both to refuse", name, werr, gerr)
		}
	}
}

func TestCodecDecodesOtherMessages(t *testing.T) {
	wire, _ := proto.Marshal(&pb.ModelMetadataRequest{Name: "m", Version: "3"})
	var got pb.ModelMetadataRequest
	if err := newCodec().Unmarshal(frames(wire, 3), &got); err != nil || got.GetName() != "m" || got.GetVersion() != "3" {
		t.Fatalf("ModelMetadataRequest: %v %v", &got, err)
	}
}

// FuzzInferRequestCodec: on any bytes in any framing, the codec decodes a
// ModelInferRequest as proto.Unmarshal does, or refuses what it refuses.
func FuzzInferRequestCodec(f *testing.F) {
	full, _ := proto.Marshal(fullInferRequest())
	small, _ := proto.Marshal(&pb.ModelInferRequest{ModelName: "m", RawInputContents: [][]byte{{0, 0, 128, 63}, {}}})
	f.Add(full, uint16(16384))
	f.Add(small, uint16(3))
	f.Add([]byte{0x3a, 0x02, 1}, uint16(1))
	f.Add([]byte{0x38, 0x07, 0x3a, 0x00}, uint16(2))
	c := newCodec()
	f.Fuzz(func(t *testing.T, wire []byte, size uint16) {
		var want, got pb.ModelInferRequest
		werr := proto.Unmarshal(wire, &want)
		gerr := c.Unmarshal(frames(wire, max(1, int(size))), &got)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("proto.Unmarshal: %v; codec: %v", werr, gerr)
		}
		if werr == nil && (!proto.Equal(&want, &got) || string(want.ProtoReflect().GetUnknown()) != string(got.ProtoReflect().GetUnknown())) {
			t.Fatalf("codec and proto.Unmarshal differ:\nproto: %v\ncodec: %v", &want, &got)
		}
	})
}
