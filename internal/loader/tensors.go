package loader

import (
	"fmt"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelops/modelops/internal/artifact"
)

// Tensor is a named tensor of one of the element types a scorer serves: Data
// is a []float32, []float64, []int32, []int64 or []bool of the shape's size,
// row-major.
type Tensor struct {
	Name  string
	Shape []int64
	Data  any
}

// Type is the element type's name in an artifact.Tensor ("float32", …).
func (t Tensor) Type() string {
	switch t.Data.(type) {
	case []float32:
		return "float32"
	case []float64:
		return "float64"
	case []int32:
		return "int32"
	case []int64:
		return "int64"
	case []bool:
		return "bool"
	}
	return "unknown"
}

// Len is the number of values in Data.
func (t Tensor) Len() int {
	switch d := t.Data.(type) {
	case []float32:
		return len(d)
	case []float64:
		return len(d)
	case []int32:
		return len(d)
	case []int64:
		return len(d)
	case []bool:
		return len(d)
	}
	return 0
}

// Zeros are inputs of rows rows of zeros (false) for every input of sig.
func Zeros(sig artifact.Signature, rows int) []Tensor {
	var out []Tensor
	for _, in := range sig.Ins() {
		shape := append([]int64{int64(rows)}, in.Shape[1:]...)
		n := 1
		for _, d := range shape {
			n *= int(d)
		}
		t := Tensor{Name: in.Name, Shape: shape}
		switch in.Type {
		case "float64":
			t.Data = make([]float64, n)
		case "int32":
			t.Data = make([]int32, n)
		case "int64":
			t.Data = make([]int64, n)
		case "bool":
			t.Data = make([]bool, n)
		default:
			t.Data = make([]float32, n)
		}
		out = append(out, t)
	}
	return out
}

func newValue(t Tensor) (ort.Value, error) {
	shape := ort.NewShape(t.Shape...)
	switch d := t.Data.(type) {
	case []float32:
		return ort.NewTensor(shape, d)
	case []float64:
		return ort.NewTensor(shape, d)
	case []int32:
		return ort.NewTensor(shape, d)
	case []int64:
		return ort.NewTensor(shape, d)
	case []bool:
		return ort.NewTensor(shape, d)
	}
	return nil, fmt.Errorf("input %q: unsupported data %T", t.Name, t.Data)
}

// tensorFrom copies a value ONNX Runtime allocated into Go memory.
func tensorFrom(name string, v ort.Value) (Tensor, error) {
	t := Tensor{Name: name, Shape: []int64(v.GetShape())}
	switch x := v.(type) {
	case *ort.Tensor[float32]:
		t.Data = append([]float32(nil), x.GetData()...)
	case *ort.Tensor[float64]:
		t.Data = append([]float64(nil), x.GetData()...)
	case *ort.Tensor[int32]:
		t.Data = append([]int32(nil), x.GetData()...)
	case *ort.Tensor[int64]:
		t.Data = append([]int64(nil), x.GetData()...)
	case *ort.Tensor[bool]:
		t.Data = append([]bool(nil), x.GetData()...)
	default:
		return Tensor{}, fmt.Errorf("output %q: unsupported value %T", name, v)
	}
	return t, nil
}

// RunTensors runs the graph on inputs given in the signature's order, each of
// its type and a shape [rows,…] it takes, and returns every output with the
// shape ONNX Runtime gave it. A budget above 0 asks ONNX Runtime to stop the
// run when it runs out (ErrBudget).
func (s *Session) RunTensors(inputs []Tensor, budget time.Duration) ([]Tensor, error) {
	return s.runTensorsWith(inputs, budget, nil)
}

func (s *Session) runTensors(inputs []Tensor, opts *ort.RunOptions) ([]Tensor, error) {
	return s.runTensorsWith(inputs, 0, opts)
}

func (s *Session) runTensorsWith(inputs []Tensor, budget time.Duration, opts *ort.RunOptions) ([]Tensor, error) {
	ins := s.sig.Ins()
	if len(inputs) != len(ins) {
		return nil, fmt.Errorf("%w: %d inputs, the graph takes %d", ErrRun, len(inputs), len(ins))
	}
	values := make([]ort.Value, len(inputs))
	defer func() {
		for _, v := range values {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, t := range inputs {
		if t.Name != ins[i].Name || t.Type() != ins[i].Type {
			return nil, fmt.Errorf("%w: input %d is %q %s, the graph takes %s", ErrRun, i, t.Name, t.Type(), ins[i])
		}
		v, err := newValue(t)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRun, err)
		}
		values[i] = v
	}
	outs := make([]ort.Value, len(s.sig.Outs()))
	defer func() {
		for _, v := range outs {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	var err error
	switch {
	case budget > 0:
		err = s.withBudget(budget, func(opts *ort.RunOptions) error { return s.sess.RunWithOptions(values, outs, opts) })
	default:
		if err = s.sess.RunWithOptions(values, outs, opts); err != nil {
			err = fmt.Errorf("%w: %v", ErrRun, err)
		}
	}
	if err != nil {
		return nil, err
	}
	result := make([]Tensor, len(outs))
	for i, v := range outs {
		if result[i], err = tensorFrom(s.sig.Outs()[i].Name, v); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRun, err)
		}
	}
	return result, nil
}

// withBudget runs run with run options that ONNX Runtime is asked to
// terminate when budget runs out; a run that ends past its budget is
// ErrBudget, whether it was stopped or finished late.
func (s *Session) withBudget(budget time.Duration, run func(*ort.RunOptions) error) error {
	opts, _ := runOptionsPool.Get().(*ort.RunOptions)
	if opts == nil {
		if err := run(nil); err != nil {
			return fmt.Errorf("%w: %v", ErrRun, err)
		}
		return nil
	}
	var b struct {
		mu          sync.Mutex
		done, fired bool
	}
	start := time.Now()
	timer := time.AfterFunc(budget, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !b.done {
			b.fired = true
			opts.Terminate()
		}
	})
	err := run(opts)
	b.mu.Lock()
	b.done = true
	fired := b.fired
	b.mu.Unlock()
	timer.Stop()
	if fired {
		opts.UnsetTerminate()
	}
	runOptionsPool.Put(opts)
	if elapsed := time.Since(start); elapsed > budget {
		return fmt.Errorf("%w: %s > %s", ErrBudget, elapsed.Round(time.Microsecond), budget)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRun, err)
	}
	return nil
}
