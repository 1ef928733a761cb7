// Package artifact describes what a model artifact is, independent of where it is
// stored or how it is run: the input/output signature of an ONNX graph and the model
// card that travels beside it.
package artifact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Errors a caller can branch on.
var (
	ErrSignature = errors.New("signature mismatch")
	ErrCard      = errors.New("invalid model card")
)

// Tensor names one input or output of a graph. A dimension of -1 is symbolic
// (the batch).
type Tensor struct {
	Name  string  `json:"name"`
	Type  string  `json:"type"`
	Shape []int64 `json:"shape"`
}

func (t Tensor) String() string {
	dims := make([]string, len(t.Shape))
	for i, d := range t.Shape {
		if d < 0 {
			dims[i] = "batch"
		} else {
			dims[i] = fmt.Sprint(d)
		}
	}
	return fmt.Sprintf("%q %s [%s]", t.Name, t.Type, strings.Join(dims, ","))
}

// Signature is the contract between a model and its callers: its inputs and
// outputs. Input and Output are the first of each; InputTensors and
// OutputTensors list them all when the graph has more than one of either (a
// version recorded before they existed has one of each).
type Signature struct {
	Input         Tensor   `json:"input"`
	Output        Tensor   `json:"output"`
	InputTensors  []Tensor `json:"inputs,omitempty"`
	OutputTensors []Tensor `json:"outputs,omitempty"`
}

// NewSignature is the signature of a graph with these inputs and outputs (at
// least one of each).
func NewSignature(ins, outs []Tensor) Signature {
	var s Signature
	if len(ins) > 0 {
		s.Input = ins[0]
	}
	if len(outs) > 0 {
		s.Output = outs[0]
	}
	if len(ins) > 1 || len(outs) > 1 {
		s.InputTensors, s.OutputTensors = ins, outs
	}
	return s
}

// Ins are every input, in the graph's order.
func (s Signature) Ins() []Tensor {
	if len(s.InputTensors) > 0 {
		return s.InputTensors
	}
	return []Tensor{s.Input}
}

// Outs are every output, in the graph's order.
func (s Signature) Outs() []Tensor {
	if len(s.OutputTensors) > 0 {
		return s.OutputTensors
	}
	return []Tensor{s.Output}
}

func (s Signature) String() string {
	var ins, outs []string
	for _, t := range s.Ins() {
		ins = append(ins, t.String())
	}
	for _, t := range s.Outs() {
		outs = append(outs, t.String())
	}
	return fmt.Sprintf("input %s, output %s", strings.Join(ins, ", "), strings.Join(outs, ", "))
}

// Rows reports whether the signature takes rows: one float32 input [batch,N]
// (what /v1/score and the fallback rules read).
func (s Signature) Rows() bool {
	in := s.Ins()
	return len(in) == 1 && in[0].Type == "float32" && len(in[0].Shape) == 2 && in[0].Shape[1] >= 1
}

// Simple reports whether the signature takes rows and yields one float32
// output [batch,M]: the shape the scorer's fastest path serves.
func (s Signature) Simple() bool {
	out := s.Outs()
	return s.Rows() && len(out) == 1 && out[0].Type == "float32" && len(out[0].Shape) == 2 && out[0].Shape[1] >= 1
}

// Features is the number of input features a row carries (0 unless the
// signature takes rows).
func (s Signature) Features() int {
	if !s.Rows() {
		return 0
	}
	return int(s.Input.Shape[1])
}

// Outputs is the number of values a row yields (0 unless the signature is
// simple).
func (s Signature) Outputs() int {
	if !s.Simple() {
		return 0
	}
	return int(s.Output.Shape[1])
}

// ServableTypes are the element types of the tensors a scorer serves, with
// the Open Inference Protocol's names for them.
var ServableTypes = map[string]string{"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64", "bool": "BOOL"}

// Servable reports whether the scorer can serve a graph of this signature:
// one or more inputs and outputs of a servable type, each with a symbolic
// batch first; the inputs' other dimensions fixed. It is the one check of
// "can this be served", run at push and before a scorer loads a version.
func (s Signature) Servable() error {
	for _, t := range s.Ins() {
		if err := servableTensor("input", t, true); err != nil {
			return err
		}
	}
	for _, t := range s.Outs() {
		if err := servableTensor("output", t, false); err != nil {
			return err
		}
	}
	return nil
}

func servableTensor(role string, t Tensor, fixed bool) error {
	if _, ok := ServableTypes[t.Type]; !ok {
		return fmt.Errorf("%w: %s %q is %s; a scorer serves float32, float64, int32, int64 and bool", ErrSignature, role, t.Name, t.Type)
	}
	if len(t.Shape) < 1 || t.Shape[0] != -1 {
		return fmt.Errorf("%w: %s %q has shape %v, want [batch,…] with a symbolic batch", ErrSignature, role, t.Name, t.Shape)
	}
	for _, d := range t.Shape[1:] {
		if fixed && d < 1 {
			return fmt.Errorf("%w: %s %q has shape %v; past the batch, an input's dimensions must be fixed", ErrSignature, role, t.Name, t.Shape)
		}
	}
	return nil
}

// Match returns an error naming the first difference between s and want.
func (s Signature) Match(want Signature) error {
	if err := matchList("input", s.Ins(), want.Ins()); err != nil {
		return err
	}
	return matchList("output", s.Outs(), want.Outs())
}

func matchList(role string, got, want []Tensor) error {
	if len(got) != len(want) {
		return fmt.Errorf("%w: %d %ss, model expects %d", ErrSignature, len(got), role, len(want))
	}
	for i := range got {
		if !got[i].equal(want[i]) {
			return fmt.Errorf("%w: %s is %s, model expects %s", ErrSignature, role, got[i], want[i])
		}
	}
	return nil
}

func (t Tensor) equal(o Tensor) bool {
	if t.Name != o.Name || t.Type != o.Type || len(t.Shape) != len(o.Shape) {
		return false
	}
	for i := range t.Shape {
		if t.Shape[i] != o.Shape[i] {
			return false
		}
	}
	return true
}

// CallingScore is the signature every calling-score version must have.
var CallingScore = Signature{
	Input:  Tensor{Name: "input", Type: "float32", Shape: []int64{-1, 39}},
	Output: Tensor{Name: "output", Type: "float32", Shape: []int64{-1, 1}},
}

// Declared returns the signature fixed up front for a model name, if any. Other
// models take the signature of their first version.
func Declared(model string) (Signature, bool) {
	if model == "calling-score" {
		return CallingScore, true
	}
	return Signature{}, false
}

// GoldenTolerance is how far a runtime's output may stray from a card's golden
// output before the artifact is refused.
const GoldenTolerance = 1e-4

// Golden is one input row with the output the exported graph must produce for it.
type Golden struct {
	Input  []float64 `json:"input"`
	Output []float64 `json:"output"`
}

// Histogram is a reference distribution: inner bin edges and the share of values
// in each of the len(Edges)+1 bins. A value v falls in the first bin whose upper
// edge is ≥ v.
type Histogram struct {
	Edges       []float64 `json:"edges"`
	Proportions []float64 `json:"proportions"`
}

// Reference holds the histograms drift is measured against.
type Reference struct {
	Features   map[string]Histogram `json:"features"`
	Prediction Histogram            `json:"prediction"`
}

// Card is the JSON document stored beside an artifact. Only the fields the platform
// acts on are typed; the rest (training summary, metrics, reference histograms) is
// kept as it came.
type Card struct {
	Model    string   `json:"model,omitempty"`
	Features []string `json:"features,omitempty"`
	Golden   []Golden `json:"golden,omitempty"`
	// Reference, when present, is what drift is measured against.
	Reference *Reference `json:"reference,omitempty"`
	// Output is the output contract: ContractScore (the default),
	// ContractRegression or ContractProbabilities.
	Output string `json:"output,omitempty"`
	raw    json.RawMessage
}

// Output contracts: what a model's output means, and what invalid_output is
// judged against.
const (
	// ContractScore is one value per row in [0,1] (calling-score's).
	ContractScore = "score"
	// ContractRegression is any finite values.
	ContractRegression = "regression"
	// ContractProbabilities is k values per row, each in [0,1], summing to 1
	// within ProbabilityTolerance.
	ContractProbabilities = "probabilities"
)

// ProbabilityTolerance is how far a row of probabilities may sum from 1.
const ProbabilityTolerance = 1e-3

// Contract is the card's output contract; a card that declares none (or no
// card) has ContractScore, which every model had before contracts.
func (c *Card) Contract() string {
	if c == nil || c.Output == "" {
		return ContractScore
	}
	return c.Output
}

// ContractOf is the output contract a version is judged by: its card's,
// else ContractScore for one float32 output [batch,M] (every model had it
// before contracts) and ContractRegression (finite values) for any other
// signature.
func ContractOf(card *Card, sig Signature) string {
	if card != nil && card.Output != "" {
		return card.Output
	}
	if sig.Simple() {
		return ContractScore
	}
	return ContractRegression
}

// ValidOutput reports whether out, rows of perRow values, keeps contract; if
// not, it returns the first row that breaks it.
func ValidOutput(contract string, out []float32, perRow int) (int, bool) {
	switch contract {
	case ContractRegression:
		for i, v := range out {
			if v-v != 0 { // NaN or infinite
				return i / max(perRow, 1), false
			}
		}
	case ContractProbabilities:
		for r := 0; perRow > 0 && (r+1)*perRow <= len(out); r++ {
			var sum float64
			for _, v := range out[r*perRow : (r+1)*perRow] {
				if !(v >= 0 && v <= 1) {
					return r, false
				}
				sum += float64(v)
			}
			if math.Abs(sum-1) > ProbabilityTolerance {
				return r, false
			}
		}
	default:
		for i, v := range out {
			if !(v >= 0 && v <= 1) { // false for NaN too
				return i / max(perRow, 1), false
			}
		}
	}
	return 0, true
}

// MaxCardBytes bounds the size of a card accepted anywhere.
const MaxCardBytes = 8 << 20

// ParseCard decodes and checks a card. An empty input is an empty card.
func ParseCard(data []byte) (*Card, error) {
	c := &Card{}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return c, nil
	}
	if len(data) > MaxCardBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrCard, len(data), MaxCardBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCard, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrCard)
	}
	for i, g := range c.Golden {
		for j, v := range g.Input {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%w: golden[%d].input[%d] is not finite", ErrCard, i, j)
			}
		}
		for j, v := range g.Output {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%w: golden[%d].output[%d] is not finite", ErrCard, i, j)
			}
		}
	}
	if c.Reference != nil {
		check := func(name string, h Histogram) error {
			if len(h.Proportions) != len(h.Edges)+1 {
				return fmt.Errorf("%w: reference %s has %d edges and %d proportions, want one more proportion than edges", ErrCard, name, len(h.Edges), len(h.Proportions))
			}
			for i := 1; i < len(h.Edges); i++ {
				if !(h.Edges[i] > h.Edges[i-1]) {
					return fmt.Errorf("%w: reference %s edges are not increasing", ErrCard, name)
				}
			}
			return nil
		}
		for name, h := range c.Reference.Features {
			if err := check("feature "+name, h); err != nil {
				return nil, err
			}
		}
		if len(c.Reference.Prediction.Proportions) > 0 {
			if err := check("prediction", c.Reference.Prediction); err != nil {
				return nil, err
			}
		}
	}
	switch c.Output {
	case "", ContractScore, ContractRegression, ContractProbabilities:
	default:
		return nil, fmt.Errorf("%w: output %q: want %q, %q or %q", ErrCard, c.Output, ContractScore, ContractRegression, ContractProbabilities)
	}
	c.raw = append(json.RawMessage(nil), data...)
	return c, nil
}

// Raw returns the card exactly as it was parsed (nil for an empty card).
func (c *Card) Raw() json.RawMessage { return c.raw }

// Check returns an error when the card cannot describe a graph of signature sig.
func (c *Card) Check(model string, sig Signature) error {
	if c.Model != "" && c.Model != model {
		return fmt.Errorf("%w: card is for model %q, not %q", ErrCard, c.Model, model)
	}
	n, m := sig.Features(), sig.Outputs()
	if len(c.Golden) > 0 && !sig.Simple() {
		return fmt.Errorf("%w: golden inputs need a graph of one float32 input [batch,N] and one float32 output [batch,M]; this one has %s", ErrCard, sig)
	}
	if c.Output != "" && c.Output != ContractRegression && !sig.Simple() {
		return fmt.Errorf("%w: output %q needs one float32 output [batch,M]; this graph has %s", ErrCard, c.Output, sig)
	}
	if len(c.Features) != 0 && sig.Rows() && len(c.Features) != n {
		return fmt.Errorf("%w: card names %d features, the graph takes %d", ErrCard, len(c.Features), n)
	}
	switch {
	case c.Output == ContractScore && m != 1:
		return fmt.Errorf("%w: output %q is one value per row, the graph yields %d", ErrCard, ContractScore, m)
	case c.Output == ContractProbabilities && m < 2:
		return fmt.Errorf("%w: output %q needs at least 2 values per row, the graph yields %d", ErrCard, ContractProbabilities, m)
	}
	for i, g := range c.Golden {
		if len(g.Input) != n {
			return fmt.Errorf("%w: golden[%d] has %d inputs, the graph takes %d", ErrCard, i, len(g.Input), n)
		}
		if len(g.Output) != m {
			return fmt.Errorf("%w: golden[%d] has %d outputs, the graph yields %d", ErrCard, i, len(g.Output), m)
		}
	}
	return nil
}
