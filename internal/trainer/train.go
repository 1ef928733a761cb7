package trainer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Config is a training run.
type Config struct {
	Seed      uint64
	Hidden    []int // default 128, 64
	Epochs    int   // maximum epochs (default 100)
	Batch     int   // default 32
	LR        float64
	Dropout   float64 // on hidden activations, training only (default 0.2)
	Patience  int     // epochs without a better validation loss before stopping (default 10)
	TrainFrac float64 // default 0.70
	ValFrac   float64 // default 0.15; the rest is the test split
}

// DefaultConfig is the calling-score recipe.
func DefaultConfig() Config {
	return Config{Seed: 42, Hidden: []int{128, 64}, Epochs: 100, Batch: 32, LR: 0.001, Dropout: 0.2, Patience: 10, TrainFrac: 0.70, ValFrac: 0.15}
}

// Epoch is the progress report after one epoch.
type Epoch struct {
	N         int
	TrainLoss float64
	ValLoss   float64
	Best      bool
	Elapsed   time.Duration
}

// Split holds the three disjoint parts of a dataset.
type Split struct {
	Train, Val, Test *Dataset
}

// SplitData shuffles rows with the seed and cuts them train/val/test.
func SplitData(d *Dataset, cfg Config) Split {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5b117))
	perm := rng.Perm(d.Len())
	nTrain := int(float64(d.Len()) * cfg.TrainFrac)
	nVal := int(float64(d.Len()) * cfg.ValFrac)
	part := func(idx []int) *Dataset {
		p := &Dataset{Features: d.Features}
		for _, i := range idx {
			p.X = append(p.X, d.X[i])
			p.Y = append(p.Y, d.Y[i])
		}
		return p
	}
	return Split{Train: part(perm[:nTrain]), Val: part(perm[nTrain : nTrain+nVal]), Test: part(perm[nTrain+nVal:])}
}

// Normalizer standardises features with the training split's mean and std.
type Normalizer struct {
	Mean, Std []float64
}

// FitNormalizer computes per-feature mean and std (std floored at 1e-6).
func FitNormalizer(d *Dataset) Normalizer {
	n := len(d.Features)
	nz := Normalizer{Mean: make([]float64, n), Std: make([]float64, n)}
	for _, x := range d.X {
		for i, v := range x {
			nz.Mean[i] += v
		}
	}
	for i := range nz.Mean {
		nz.Mean[i] /= float64(d.Len())
	}
	for _, x := range d.X {
		for i, v := range x {
			dv := v - nz.Mean[i]
			nz.Std[i] += dv * dv
		}
	}
	for i := range nz.Std {
		nz.Std[i] = math.Max(math.Sqrt(nz.Std[i]/float64(d.Len())), 1e-6)
	}
	return nz
}

// net is the float64 training copy of an MLP.
type net struct {
	w, b [][]float64 // per layer: w is out×in row-major
	in   []int
	out  []int
}

func newNet(rng *rand.Rand, widths []int) *net {
	n := &net{}
	for l := 0; l+1 < len(widths); l++ {
		in, out := widths[l], widths[l+1]
		w := make([]float64, in*out)
		// He initialisation (uniform), suited to ReLU layers.
		limit := math.Sqrt(6 / float64(in))
		for i := range w {
			w[i] = (rng.Float64()*2 - 1) * limit
		}
		n.w = append(n.w, w)
		n.b = append(n.b, make([]float64, out))
		n.in = append(n.in, in)
		n.out = append(n.out, out)
	}
	return n
}

func (n *net) clone() *net {
	c := &net{in: n.in, out: n.out}
	for l := range n.w {
		c.w = append(c.w, append([]float64(nil), n.w[l]...))
		c.b = append(c.b, append([]float64(nil), n.b[l]...))
	}
	return c
}

// forward computes activations for one normalised row; acts[0] is the input, and
// masks (when not nil) apply inverted dropout to hidden activations.
func (n *net) forward(x []float64, acts [][]float64, masks [][]float64) float64 {
	copy(acts[0], x)
	last := len(n.w) - 1
	for l := range n.w {
		in, out := acts[l], acts[l+1]
		w := n.w[l]
		for o := 0; o < n.out[l]; o++ {
			s := n.b[l][o]
			row := w[o*n.in[l] : (o+1)*n.in[l]]
			for i, wi := range row {
				s += wi * in[i]
			}
			if l == last {
				out[o] = sigmoid(s)
				continue
			}
			if s < 0 {
				s = 0
			}
			if masks != nil {
				s *= masks[l][o]
			}
			out[o] = s
		}
	}
	return acts[len(acts)-1][0]
}

// adam holds optimiser state; b1t and b2t are β1ᵗ and β2ᵗ, kept as running
// products so no pow is needed.
type adam struct {
	mw, vw, mb, vb [][]float64
	b1t, b2t       float64
}

func newAdam(n *net) *adam {
	a := &adam{b1t: 1, b2t: 1}
	for l := range n.w {
		a.mw = append(a.mw, make([]float64, len(n.w[l])))
		a.vw = append(a.vw, make([]float64, len(n.w[l])))
		a.mb = append(a.mb, make([]float64, len(n.b[l])))
		a.vb = append(a.vb, make([]float64, len(n.b[l])))
	}
	return a
}

func (a *adam) step(n *net, gw, gb [][]float64, lr float64) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	a.b1t *= b1
	a.b2t *= b2
	c1, c2 := 1-a.b1t, 1-a.b2t
	upd := func(p, g, m, v []float64) {
		for i := range p {
			m[i] = b1*m[i] + (1-b1)*g[i]
			v[i] = b2*v[i] + (1-b2)*g[i]*g[i]
			p[i] -= lr * (m[i] / c1) / (math.Sqrt(v[i]/c2) + eps)
		}
	}
	for l := range n.w {
		upd(n.w[l], gw[l], a.mw[l], a.vw[l])
		upd(n.b[l], gb[l], a.mb[l], a.vb[l])
	}
}

// Result is a trained model with what the training saw.
type Result struct {
	MLP        *MLP
	Normalizer Normalizer
	Epochs     []Epoch
	BestEpoch  int
	Split      Split
	Duration   time.Duration
}

// Train fits an MLP to d: inputs standardised with the training split's
// statistics, Adam on MSE with mini-batches, dropout on hidden layers, early stop
// on validation loss. The normalisation is folded into the first layer of the
// returned MLP, so it takes raw features. progress, when set, is called after
// every epoch. The same data and config give the same weights, bit for bit.
func Train(d *Dataset, cfg Config, progress func(Epoch)) (*Result, error) {
	if d.Len() < 20 {
		return nil, fmt.Errorf("train: %d rows is too few (want at least 20)", d.Len())
	}
	sp := SplitData(d, cfg)
	nz := FitNormalizer(sp.Train)
	norm := func(ds *Dataset) [][]float64 {
		out := make([][]float64, ds.Len())
		for r, x := range ds.X {
			out[r] = make([]float64, len(x))
			for i, v := range x {
				out[r][i] = (v - nz.Mean[i]) / nz.Std[i]
			}
		}
		return out
	}
	trainX, valX := norm(sp.Train), norm(sp.Val)
	widths := append(append([]int{len(d.Features)}, cfg.Hidden...), 1)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x7a1))
	n := newNet(rng, widths)
	opt := newAdam(n)

	acts := make([][]float64, len(widths))
	deltas := make([][]float64, len(widths))
	for i, w := range widths {
		acts[i] = make([]float64, w)
		deltas[i] = make([]float64, w)
	}
	masks := make([][]float64, len(widths)-2)
	for l := range masks {
		masks[l] = make([]float64, widths[l+1])
	}
	gw := make([][]float64, len(n.w))
	gb := make([][]float64, len(n.b))
	for l := range n.w {
		gw[l] = make([]float64, len(n.w[l]))
		gb[l] = make([]float64, len(n.b[l]))
	}
	keep := 1 - cfg.Dropout

	evalLoss := func(X [][]float64, Y []float64) float64 {
		var s float64
		for r, x := range X {
			e := n.forward(x, acts, nil) - Y[r]
			s += e * e
		}
		return s / float64(len(X))
	}

	start := time.Now()
	res := &Result{Split: sp, Normalizer: nz}
	best := math.Inf(1)
	var bestNet *net
	since := 0
	order := make([]int, len(trainX))
	for i := range order {
		order[i] = i
	}
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var trainSum float64
		for b0 := 0; b0 < len(order); b0 += cfg.Batch {
			b1 := min(b0+cfg.Batch, len(order))
			for l := range gw {
				clear(gw[l])
				clear(gb[l])
			}
			for _, r := range order[b0:b1] {
				for l := range masks {
					for o := range masks[l] {
						if rng.Float64() < keep {
							masks[l][o] = 1 / keep
						} else {
							masks[l][o] = 0
						}
					}
				}
				pred := n.forward(trainX[r], acts, masks)
				e := pred - sp.Train.Y[r]
				trainSum += e * e
				// d(MSE)/d(pre-sigmoid) for this row, averaged over the batch.
				last := len(n.w) - 1
				deltas[last+1][0] = 2 * e * pred * (1 - pred) / float64(b1-b0)
				for l := last; l >= 0; l-- {
					in, dout := acts[l], deltas[l+1]
					w, g := n.w[l], gw[l]
					din := deltas[l]
					clear(din)
					for o := 0; o < n.out[l]; o++ {
						dz := dout[o]
						if dz == 0 {
							continue
						}
						gb[l][o] += dz
						row := w[o*n.in[l] : (o+1)*n.in[l]]
						grow := g[o*n.in[l] : (o+1)*n.in[l]]
						for i := range row {
							grow[i] += dz * in[i]
							din[i] += dz * row[i]
						}
					}
					if l > 0 {
						// Through dropout and ReLU of the layer below.
						for i := range din {
							if acts[l][i] <= 0 {
								din[i] = 0
							} else {
								din[i] *= masks[l-1][i]
							}
						}
					}
				}
			}
			opt.step(n, gw, gb, cfg.LR)
		}
		val := evalLoss(valX, sp.Val.Y)
		ep := Epoch{N: epoch, TrainLoss: trainSum / float64(len(order)), ValLoss: val, Elapsed: time.Since(start)}
		if val < best {
			best, bestNet, since, res.BestEpoch = val, n.clone(), 0, epoch
			ep.Best = true
		} else {
			since++
		}
		res.Epochs = append(res.Epochs, ep)
		if progress != nil {
			progress(ep)
		}
		if since >= cfg.Patience {
			break
		}
	}
	res.Duration = time.Since(start)
	res.MLP = fold(bestNet, nz)
	return res, nil
}

// fold turns the float64 network on standardised inputs into a float32 MLP on raw
// inputs: W1' = W1/std, b1' = b1 − W1'·mean.
func fold(n *net, nz Normalizer) *MLP {
	m := &MLP{}
	for l := range n.w {
		d := Dense{In: n.in[l], Out: n.out[l], W: make([]float32, len(n.w[l])), B: make([]float32, n.out[l])}
		for o := 0; o < d.Out; o++ {
			b := n.b[l][o]
			for i := 0; i < d.In; i++ {
				w := n.w[l][o*d.In+i]
				if l == 0 {
					w /= nz.Std[i]
					b -= w * nz.Mean[i]
				}
				d.W[o*d.In+i] = float32(w)
			}
			d.B[o] = float32(b)
		}
		m.Layers = append(m.Layers, d)
	}
	return m
}
