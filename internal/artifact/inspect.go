package artifact

import (
	"errors"
	"fmt"

	"github.com/modelops/modelops/internal/onnx"
	"google.golang.org/protobuf/proto"
)

// ErrNotONNX means the bytes are not an ONNX model.
var ErrNotONNX = errors.New("not an ONNX model")

// elemTypes names the ONNX tensor element types the platform may meet.
var elemTypes = map[int32]string{1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64", 16: "bfloat16"}

// Inspect reads an ONNX model's graph inputs (less its initializers) and outputs
// from the protobuf, without a runtime: a cheap first look that names what is
// wrong with a file before ONNX Runtime is asked to load it.
func Inspect(data []byte) (Signature, error) {
	var m onnx.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		return Signature{}, fmt.Errorf("%w: %v", ErrNotONNX, err)
	}
	g := m.GetGraph()
	if g == nil || m.GetIrVersion() == 0 {
		return Signature{}, fmt.Errorf("%w: no graph or IR version", ErrNotONNX)
	}
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	var ins []Tensor
	for _, v := range g.GetInput() {
		if !inits[v.GetName()] {
			ins = append(ins, tensorFromValueInfo(v))
		}
	}
	var outs []Tensor
	for _, v := range g.GetOutput() {
		outs = append(outs, tensorFromValueInfo(v))
	}
	if len(ins) < 1 || len(outs) < 1 {
		return Signature{}, fmt.Errorf("%w: graph has %d inputs and %d outputs, want at least 1 of each", ErrSignature, len(ins), len(outs))
	}
	return NewSignature(ins, outs), nil
}

func tensorFromValueInfo(v *onnx.ValueInfoProto) Tensor {
	t := Tensor{Name: v.GetName(), Type: "unknown"}
	tt := v.GetType().GetTensorType()
	if tt == nil {
		t.Type = "non-tensor"
		return t
	}
	if name, ok := elemTypes[tt.GetElemType()]; ok {
		t.Type = name
	}
	for _, d := range tt.GetShape().GetDim() {
		if dv, ok := d.GetValue().(*onnx.TensorShapeProto_Dimension_DimValue); ok {
			t.Shape = append(t.Shape, dv.DimValue)
		} else {
			t.Shape = append(t.Shape, -1)
		}
	}
	return t
}
