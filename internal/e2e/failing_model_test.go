package e2e

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelops/modelops/internal/onnx"
	"google.golang.org/protobuf/proto"
)

// failingArtifact is a calling-score graph whose session loads, warms up on zeros
// and then fails at run time on real traffic: it gathers from a one-element table
// at index ⌊2·x⌋, which is out of range as soon as a feature reaches 0.5.
func failingArtifact(t *testing.T) string {
	t.Helper()
	vi := func(name string, elem onnx.TensorProto_DataType, width int64) *onnx.ValueInfoProto {
		return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{
			ElemType: int32(elem),
			Shape: &onnx.TensorShapeProto{Dim: []*onnx.TensorShapeProto_Dimension{
				{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}},
				{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: width}},
			}},
		}}}}
	}
	f32 := func(name string, dims []int64, v ...float32) *onnx.TensorProto {
		raw := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
		}
		return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), RawData: raw}
	}
	g := &onnx.GraphProto{
		Name:        "fails_on_traffic",
		Input:       []*onnx.ValueInfoProto{vi("input", onnx.TensorProto_FLOAT, 39)},
		Output:      []*onnx.ValueInfoProto{vi("output", onnx.TensorProto_FLOAT, 1)},
		Initializer: []*onnx.TensorProto{f32("two", []int64{}, 2), f32("table", []int64{1}, 0.5)},
		Node: []*onnx.NodeProto{
			{OpType: "Mul", Input: []string{"input", "two"}, Output: []string{"doubled"}},
			{OpType: "Cast", Input: []string{"doubled"}, Output: []string{"idx"}, Attribute: []*onnx.AttributeProto{{Name: "to", Type: onnx.AttributeProto_INT, I: int64(onnx.TensorProto_INT64)}}},
			{OpType: "Gather", Input: []string{"table", "idx"}, Output: []string{"picked"}},
			{OpType: "ReduceMean", Input: []string{"picked"}, Output: []string{"output"}, Attribute: []*onnx.AttributeProto{
				{Name: "axes", Type: onnx.AttributeProto_INTS, Ints: []int64{1}}, {Name: "keepdims", Type: onnx.AttributeProto_INT, I: 1}}},
		},
	}
	data, err := proto.Marshal(&onnx.ModelProto{IrVersion: 8, OpsetImport: []*onnx.OperatorSetIdProto{{Version: 17}}, Graph: g})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "fails.onnx")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
