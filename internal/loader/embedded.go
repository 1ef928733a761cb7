package loader

import (
	"errors"
	"fmt"
	"os"

	"github.com/modelops/modelops/internal/onnx"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protopath"
	"google.golang.org/protobuf/reflect/protorange"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ErrExternalData means a graph's tensors point at files outside the artifact.
var ErrExternalData = errors.New("external data")

// CheckEmbedded reads the ONNX file at path and returns an error naming the
// first tensor whose data lives outside it (data_location EXTERNAL, or external
// data entries): initializers, constants, attributes and subgraphs alike. ONNX
// Runtime would read such data from files beside the model, which an artifact
// cannot carry and must not reach.
func CheckEmbedded(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m onnx.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		// Say what the runtime says of a file it cannot load; one it can load
		// but that is no valid ONNX protobuf is refused all the same.
		if _, _, oerr := inspect(path); oerr != nil {
			return fmt.Errorf("%w: ONNX Runtime cannot load it: %v", ErrInvalidModel, oerr)
		}
		return fmt.Errorf("%w: not a valid ONNX protobuf: %v", ErrInvalidModel, err)
	}
	data = nil
	var found error
	protorange.Range(m.ProtoReflect(), func(v protopath.Values) error {
		msg, ok := v.Index(-1).Value.Interface().(protoreflect.Message)
		if !ok {
			return nil
		}
		tp, ok := msg.Interface().(*onnx.TensorProto)
		if !ok || (tp.DataLocation != onnx.TensorProto_EXTERNAL && len(tp.ExternalData) == 0) {
			return nil
		}
		name := tp.Name
		if name == "" {
			name = "(unnamed, at " + v.Path[1:].String() + ")"
		}
		if len(name) > 200 {
			name = name[:200] + "…"
		}
		found = fmt.Errorf("%w: %w: tensor %q keeps its data in an external file; embed it in the .onnx (onnx.save_model(..., save_as_external_data=False))", ErrInvalidModel, ErrExternalData, name)
		return protorange.Terminate
	})
	return found
}
