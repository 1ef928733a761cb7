// Package trainer makes calling-score models without Python: synthetic data, a
// small MLP trained in Go, its export to ONNX and the model card that goes with it.
package trainer

import (
	"math"
	"math/rand/v2"
)

// Dense is a fully connected layer y = W·x + b with W stored row-major as
// Out rows of In weights (ONNX Gemm with transB=1).
type Dense struct {
	In, Out int
	W       []float32
	B       []float32
}

// Activation follows a layer.
type Activation int

// Activations the exporter knows.
const (
	ReLU Activation = iota
	Sigmoid
)

// MLP is a stack of dense layers; every hidden layer is followed by ReLU and the
// last by a sigmoid, so outputs lie in (0,1).
type MLP struct {
	Layers []Dense
}

// NewMLP returns an MLP with the given layer widths (e.g. 39,128,64,1) and
// He-initialised weights drawn from a PCG seeded with seed.
func NewMLP(seed uint64, widths ...int) *MLP {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m := &MLP{}
	for i := 0; i+1 < len(widths); i++ {
		in, out := widths[i], widths[i+1]
		d := Dense{In: in, Out: out, W: make([]float32, in*out), B: make([]float32, out)}
		scale := math.Sqrt(2 / float64(in))
		for j := range d.W {
			d.W[j] = float32(normal(rng) * scale)
		}
		m.Layers = append(m.Layers, d)
	}
	return m
}

// Widths returns the layer widths, input first.
func (m *MLP) Widths() []int {
	w := []int{m.Layers[0].In}
	for _, l := range m.Layers {
		w = append(w, l.Out)
	}
	return w
}

// Forward computes the output of one row in float64 arithmetic over the float32
// weights, the reference the exported graph is checked against.
func (m *MLP) Forward(x []float32) []float32 {
	cur := make([]float64, len(x))
	for i, v := range x {
		cur[i] = float64(v)
	}
	for li, l := range m.Layers {
		next := make([]float64, l.Out)
		for o := 0; o < l.Out; o++ {
			s := float64(l.B[o])
			row := l.W[o*l.In : (o+1)*l.In]
			for i, w := range row {
				s += float64(w) * cur[i]
			}
			if li == len(m.Layers)-1 {
				s = sigmoid(s)
			} else if s < 0 {
				s = 0
			}
			next[o] = s
		}
		cur = next
	}
	out := make([]float32, len(cur))
	for i, v := range cur {
		out[i] = float32(v)
	}
	return out
}
