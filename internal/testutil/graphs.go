package testutil

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelops/modelops/internal/onnx"
	"google.golang.org/protobuf/proto"
)

// Graphs written with the ONNX protobuf types, for signatures and behaviours
// the trainer's MLP does not have.

// ValueInfo declares a graph input or output of elem type and shape; a
// dimension below 0 is the symbolic batch.
func ValueInfo(name string, elem onnx.TensorProto_DataType, dims ...int64) *onnx.ValueInfoProto {
	var shape []*onnx.TensorShapeProto_Dimension
	for _, d := range dims {
		if d < 0 {
			shape = append(shape, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}})
		} else {
			shape = append(shape, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
	}
	return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{
		ElemType: int32(elem), Shape: &onnx.TensorShapeProto{Dim: shape},
	}}}}
}

// Float32s is an initializer of float32 values.
func Float32s(name string, dims []int64, v ...float32) *onnx.TensorProto {
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
	}
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), RawData: raw}
}

// Int64s is an initializer of int64 values.
func Int64s(name string, dims []int64, v ...int64) *onnx.TensorProto {
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_INT64), Int64Data: v}
}

// MustGraph writes g as an ONNX model (opset 17) to a temp file and returns
// its path.
func MustGraph(tb testing.TB, g *onnx.GraphProto) string {
	tb.Helper()
	data, err := proto.Marshal(&onnx.ModelProto{IrVersion: 8, OpsetImport: []*onnx.OperatorSetIdProto{{Version: 17}}, Graph: g})
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(tb.TempDir(), g.GetName()+".onnx")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// RegressionModel is a calling-score-shaped graph ([batch,39] in, [batch,1]
// out) whose outputs are around 100: output = sum(input) + 100.
func RegressionModel(tb testing.TB) string {
	tb.Helper()
	return MustGraph(tb, &onnx.GraphProto{
		Name:        "regression",
		Input:       []*onnx.ValueInfoProto{ValueInfo("input", onnx.TensorProto_FLOAT, -1, 39)},
		Output:      []*onnx.ValueInfoProto{ValueInfo("output", onnx.TensorProto_FLOAT, -1, 1)},
		Initializer: []*onnx.TensorProto{Float32s("bias", nil, 100), Int64s("axes", []int64{1}, 1)},
		Node: []*onnx.NodeProto{
			{OpType: "ReduceSum", Input: []string{"input", "axes"}, Output: []string{"sum"}, Attribute: []*onnx.AttributeProto{{Name: "keepdims", Type: onnx.AttributeProto_INT, I: 1}}},
			{OpType: "Add", Input: []string{"sum", "bias"}, Output: []string{"output"}},
		},
	})
}

// SoftmaxModel is a 10-feature, 3-class classifier: input FP32 [batch,10],
// output "probabilities" FP32 [batch,3], each row summing to 1.
func SoftmaxModel(tb testing.TB) string {
	tb.Helper()
	w := make([]float32, 30)
	for i := range w {
		w[i] = float32(i%7)/7 - 0.4
	}
	return MustGraph(tb, &onnx.GraphProto{
		Name:        "softmax",
		Input:       []*onnx.ValueInfoProto{ValueInfo("input", onnx.TensorProto_FLOAT, -1, 10)},
		Output:      []*onnx.ValueInfoProto{ValueInfo("probabilities", onnx.TensorProto_FLOAT, -1, 3)},
		Initializer: []*onnx.TensorProto{Float32s("w", []int64{10, 3}, w...)},
		Node: []*onnx.NodeProto{
			{OpType: "MatMul", Input: []string{"input", "w"}, Output: []string{"logits"}},
			{OpType: "Softmax", Input: []string{"logits"}, Output: []string{"probabilities"}, Attribute: []*onnx.AttributeProto{{Name: "axis", Type: onnx.AttributeProto_INT, I: 1}}},
		},
	})
}

// MixedModel takes one input of each servable type and yields three outputs:
//
//	x     FP32  [batch,3]   twice = 2·x                       FP32  [batch,3]
//	n     INT64 [batch,1]   sum   = Σx + n + w + m + flag     FP32  [batch,1]
//	w     FP64  [batch,1]   next  = n + 1                     INT64 [batch,1]
//	m     INT32 [batch,1]
//	flag  BOOL  [batch,1]
func MixedModel(tb testing.TB) string {
	tb.Helper()
	cast := func(in, out string) *onnx.NodeProto {
		return &onnx.NodeProto{OpType: "Cast", Input: []string{in}, Output: []string{out}, Attribute: []*onnx.AttributeProto{{Name: "to", Type: onnx.AttributeProto_INT, I: int64(onnx.TensorProto_FLOAT)}}}
	}
	return MustGraph(tb, &onnx.GraphProto{
		Name: "mixed",
		Input: []*onnx.ValueInfoProto{
			ValueInfo("x", onnx.TensorProto_FLOAT, -1, 3), ValueInfo("n", onnx.TensorProto_INT64, -1, 1),
			ValueInfo("w", onnx.TensorProto_DOUBLE, -1, 1), ValueInfo("m", onnx.TensorProto_INT32, -1, 1),
			ValueInfo("flag", onnx.TensorProto_BOOL, -1, 1),
		},
		Output: []*onnx.ValueInfoProto{
			ValueInfo("twice", onnx.TensorProto_FLOAT, -1, 3), ValueInfo("sum", onnx.TensorProto_FLOAT, -1, 1),
			ValueInfo("next", onnx.TensorProto_INT64, -1, 1),
		},
		Initializer: []*onnx.TensorProto{Float32s("two", nil, 2), Int64s("one", nil, 1), Int64s("axes", []int64{1}, 1)},
		Node: []*onnx.NodeProto{
			{OpType: "Mul", Input: []string{"x", "two"}, Output: []string{"twice"}},
			{OpType: "ReduceSum", Input: []string{"x", "axes"}, Output: []string{"sx"}, Attribute: []*onnx.AttributeProto{{Name: "keepdims", Type: onnx.AttributeProto_INT, I: 1}}},
			cast("n", "nf"), cast("w", "wf"), cast("m", "mf"), cast("flag", "ff"),
			{OpType: "Sum", Input: []string{"sx", "nf", "wf", "mf", "ff"}, Output: []string{"sum"}},
			{OpType: "Add", Input: []string{"n", "one"}, Output: []string{"next"}},
		},
	})
}

// LoopingModel is a calling-score-shaped graph ([batch,39] in, [batch,1] out)
// whose every run loops 10^15 times: it loads, but its first run never ends.
func LoopingModel(tb testing.TB) string {
	tb.Helper()
	body := &onnx.GraphProto{
		Name: "body",
		Input: []*onnx.ValueInfoProto{
			{Name: "i", Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{ElemType: int32(onnx.TensorProto_INT64), Shape: &onnx.TensorShapeProto{}}}}},
			{Name: "c_in", Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{ElemType: int32(onnx.TensorProto_BOOL), Shape: &onnx.TensorShapeProto{}}}}},
			ValueInfo("v_in", onnx.TensorProto_FLOAT, -1, 1),
		},
		Output:      []*onnx.ValueInfoProto{{Name: "c_out", Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{ElemType: int32(onnx.TensorProto_BOOL), Shape: &onnx.TensorShapeProto{}}}}}, ValueInfo("v_out", onnx.TensorProto_FLOAT, -1, 1)},
		Initializer: []*onnx.TensorProto{Float32s("tiny", nil, 1e-9)},
		Node: []*onnx.NodeProto{
			{OpType: "Identity", Input: []string{"c_in"}, Output: []string{"c_out"}},
			{OpType: "Add", Input: []string{"v_in", "tiny"}, Output: []string{"v_out"}},
		},
	}
	return MustGraph(tb, &onnx.GraphProto{
		Name:   "looping",
		Input:  []*onnx.ValueInfoProto{ValueInfo("input", onnx.TensorProto_FLOAT, -1, 39)},
		Output: []*onnx.ValueInfoProto{ValueInfo("output", onnx.TensorProto_FLOAT, -1, 1)},
		Initializer: []*onnx.TensorProto{Int64s("trips", nil, 1_000_000_000_000_000),
			{Name: "go_on", DataType: int32(onnx.TensorProto_BOOL), Int32Data: []int32{1}}},
		Node: []*onnx.NodeProto{
			{OpType: "ReduceMean", Input: []string{"input"}, Output: []string{"start"}, Attribute: []*onnx.AttributeProto{
				{Name: "axes", Type: onnx.AttributeProto_INTS, Ints: []int64{1}}, {Name: "keepdims", Type: onnx.AttributeProto_INT, I: 1}}},
			{OpType: "Loop", Input: []string{"trips", "go_on", "start"}, Output: []string{"output"}, Attribute: []*onnx.AttributeProto{{Name: "body", Type: onnx.AttributeProto_GRAPH, G: body}}},
		},
	})
}
