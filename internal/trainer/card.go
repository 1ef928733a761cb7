package trainer

import (
	"fmt"
	"math/rand/v2"

	"github.com/modelops/modelops/internal/artifact"
)

// GoldenInputs returns n rows of width features drawn uniformly from [0,1] by a
// PCG seeded with seed: the inputs whose outputs a card pins down.
func GoldenInputs(seed uint64, n, width int) [][]float32 {
	rng := rand.New(rand.NewPCG(seed, 0x60d1e5))
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = make([]float32, width)
		for j := range rows[i] {
			rows[i][j] = rng.Float32()
		}
	}
	return rows
}

// Runner scores rows laid out flat; the runtime a card's golden outputs come from.
type Runner func(flat []float32, rows int) ([]float32, error)

// AddGolden records n golden inputs with the outputs run gives for them.
func AddGolden(card *artifact.Card, run Runner, seed uint64, n, width, outputs int) error {
	rows := GoldenInputs(seed, n, width)
	flat := make([]float32, 0, n*width)
	for _, r := range rows {
		flat = append(flat, r...)
	}
	out, err := run(flat, n)
	if err != nil {
		return fmt.Errorf("golden outputs: %w", err)
	}
	if len(out) != n*outputs {
		return fmt.Errorf("golden outputs: %d values for %d rows of %d", len(out), n, outputs)
	}
	card.Golden = card.Golden[:0]
	for i, r := range rows {
		g := artifact.Golden{Input: make([]float64, width), Output: make([]float64, outputs)}
		for j, v := range r {
			g.Input[j] = float64(v)
		}
		for j := range g.Output {
			g.Output[j] = float64(out[i*outputs+j])
		}
		card.Golden = append(card.Golden, g)
	}
	return nil
}
