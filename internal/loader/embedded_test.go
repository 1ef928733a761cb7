package loader

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/onnx"
	"google.golang.org/protobuf/proto"
)

// External data is found wherever a tensor sits: an initializer, or a Constant
// node's attribute inside a subgraph.
func TestCheckEmbeddedFindsExternalTensors(t *testing.T) {
	external := func(name string) *onnx.TensorProto {
		return &onnx.TensorProto{Name: name, DataType: int32(onnx.TensorProto_FLOAT), DataLocation: onnx.TensorProto_EXTERNAL,
			ExternalData: []*onnx.StringStringEntryProto{{Key: "location", Value: "../../etc/passwd"}}}
	}
	inline := &onnx.TensorProto{Name: "inline", DataType: int32(onnx.TensorProto_FLOAT), FloatData: []float32{1}}
	nested := &onnx.GraphProto{Name: "body", Node: []*onnx.NodeProto{{OpType: "Constant", Output: []string{"c"},
		Attribute: []*onnx.AttributeProto{{Name: "value", Type: onnx.AttributeProto_TENSOR, T: external("deep")}}}}}
	for _, tc := range []struct {
		name  string
		graph *onnx.GraphProto
		want  string // the tensor named, or "" for none
	}{
		{"inline only", &onnx.GraphProto{Initializer: []*onnx.TensorProto{inline}}, ""},
		{"initializer", &onnx.GraphProto{Initializer: []*onnx.TensorProto{inline, external("weights")}}, `"weights"`},
		{"in a subgraph", &onnx.GraphProto{Node: []*onnx.NodeProto{{OpType: "Loop",
			Attribute: []*onnx.AttributeProto{{Name: "body", Type: onnx.AttributeProto_GRAPH, G: nested}}}}}, `"deep"`},
	} {
		data, err := proto.Marshal(&onnx.ModelProto{IrVersion: 8, Graph: tc.graph})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "m.onnx")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		err = CheckEmbedded(p)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrExternalData) || !errors.Is(err, ErrInvalidModel) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want external data naming %s", tc.name, err, tc.want)
		}
	}
}
