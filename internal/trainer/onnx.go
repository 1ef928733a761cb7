package trainer

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/modelops/modelops/internal/onnx"
	"google.golang.org/protobuf/proto"
)

// Export format constants, stated in every card.
const (
	OpsetVersion = 17
	IRVersion    = 8
	Producer     = "modelops-trainer"
	// FormatVersion is the producer version written into exported models; it changes
	// only when the export itself changes, so rebuilding a model is byte-identical.
	FormatVersion = "1"
)

// ExportMeta is written into the ONNX model's metadata.
type ExportMeta struct {
	GraphName       string
	ProducerVersion string
	Doc             string
	Metadata        map[string]string
}

// ExportONNX encodes the MLP as an ONNX graph with input "input" float32
// [batch,In] and output "output" float32 [batch,Out]: a Gemm per layer (transB=1),
// Relu between layers and Sigmoid at the end. Encoding goes through the ONNX
// protobuf types, and is deterministic for the same weights and metadata.
func ExportONNX(m *MLP, meta ExportMeta) ([]byte, error) {
	if len(m.Layers) == 0 {
		return nil, fmt.Errorf("export: the MLP has no layers")
	}
	g := &onnx.GraphProto{Name: meta.GraphName, DocString: meta.Doc}
	if g.Name == "" {
		g.Name = "mlp"
	}
	in := m.Layers[0].In
	out := m.Layers[len(m.Layers)-1].Out
	g.Input = []*onnx.ValueInfoProto{valueInfo("input", "batch", int64(in))}
	g.Output = []*onnx.ValueInfoProto{valueInfo("output", "batch", int64(out))}

	prev := "input"
	for i, l := range m.Layers {
		if len(l.W) != l.In*l.Out || len(l.B) != l.Out {
			return nil, fmt.Errorf("export: layer %d has %d weights and %d biases for %d×%d", i, len(l.W), len(l.B), l.Out, l.In)
		}
		if i > 0 && l.In != m.Layers[i-1].Out {
			return nil, fmt.Errorf("export: layer %d takes %d inputs, layer %d yields %d", i, l.In, i-1, m.Layers[i-1].Out)
		}
		w, b := fmt.Sprintf("layer%d.weight", i), fmt.Sprintf("layer%d.bias", i)
		g.Initializer = append(g.Initializer,
			floatTensor(w, []int64{int64(l.Out), int64(l.In)}, l.W),
			floatTensor(b, []int64{int64(l.Out)}, l.B))
		gemm := fmt.Sprintf("layer%d.gemm", i)
		g.Node = append(g.Node, &onnx.NodeProto{
			Name: gemm, OpType: "Gemm",
			Input: []string{prev, w, b}, Output: []string{gemm},
			Attribute: []*onnx.AttributeProto{{Name: "transB", Type: onnx.AttributeProto_INT, I: 1}},
		})
		if i == len(m.Layers)-1 {
			g.Node = append(g.Node, &onnx.NodeProto{Name: "sigmoid", OpType: "Sigmoid", Input: []string{gemm}, Output: []string{"output"}})
		} else {
			act := fmt.Sprintf("layer%d.relu", i)
			g.Node = append(g.Node, &onnx.NodeProto{Name: act, OpType: "Relu", Input: []string{gemm}, Output: []string{act}})
			prev = act
		}
	}
	model := &onnx.ModelProto{
		IrVersion:       IRVersion,
		OpsetImport:     []*onnx.OperatorSetIdProto{{Domain: "", Version: OpsetVersion}},
		ProducerName:    Producer,
		ProducerVersion: meta.ProducerVersion,
		Domain:          "ai.modelops",
		ModelVersion:    1,
		DocString:       meta.Doc,
		Graph:           g,
	}
	for _, k := range sortedKeys(meta.Metadata) {
		model.MetadataProps = append(model.MetadataProps, &onnx.StringStringEntryProto{Key: k, Value: meta.Metadata[k]})
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(model)
}

func valueInfo(name, batch string, width int64) *onnx.ValueInfoProto {
	return &onnx.ValueInfoProto{
		Name: name,
		Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{
			ElemType: int32(onnx.TensorProto_FLOAT),
			Shape: &onnx.TensorShapeProto{Dim: []*onnx.TensorShapeProto_Dimension{
				{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: batch}},
				{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: width}},
			}},
		}}},
	}
}

func floatTensor(name string, dims []int64, data []float32) *onnx.TensorProto {
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), RawData: raw}
}
