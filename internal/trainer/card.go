package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"time"

	"github.com/modelops/modelops/internal/artifact"
)

// CardFormat names the layout of cards this package writes.
const CardFormat = "modelops.card/v1"

// Card is the model card the trainer writes; internal/artifact reads the fields the
// platform acts on (model, features, golden) and keeps the rest as it is.
type Card struct {
	Model     string             `json:"model"`
	Format    string             `json:"format"`
	Features  []string           `json:"features"`
	Export    ExportInfo         `json:"export"`
	Training  *TrainingInfo      `json:"training,omitempty"`
	Data      DataInfo           `json:"data"`
	Metrics   map[string]Metrics `json:"metrics,omitempty"`
	Reference Reference          `json:"reference"`
	Golden    []artifact.Golden  `json:"golden"`
}

// ExportInfo says how the ONNX file was written.
type ExportInfo struct {
	Opset           int    `json:"opset,omitempty"`
	IRVersion       int    `json:"ir_version,omitempty"`
	Producer        string `json:"producer,omitempty"`
	ProducerVersion string `json:"producer_version,omitempty"`
	Input           string `json:"input"`
	Output          string `json:"output"`
}

// TrainingInfo is the training config and how the run went.
type TrainingInfo struct {
	Source       string  `json:"source"`
	Seed         uint64  `json:"seed"`
	Architecture string  `json:"architecture"`
	Optimizer    string  `json:"optimizer"`
	LR           float64 `json:"lr"`
	Batch        int     `json:"batch"`
	Dropout      float64 `json:"dropout"`
	MaxEpochs    int     `json:"max_epochs"`
	Patience     int     `json:"patience"`
	EpochsRun    int     `json:"epochs_run"`
	BestEpoch    int     `json:"best_epoch"`
	TrainRows    int     `json:"train_rows"`
	ValRows      int     `json:"val_rows"`
	TestRows     int     `json:"test_rows"`
	Normalize    string  `json:"normalization"`
	// Export says which prediction log the data came from, when it came from
	// `modelctl export` (read from the export's sidecar).
	Export *ExportSource `json:"export,omitempty"`
}

// ExportSource describes an export of the prediction log: the model, the
// time range asked for and the one the rows span, the filters, and the
// counts. `modelctl export` writes it beside its file (FILE.source.json);
// `modelctl train --data FILE` copies it into the card.
type ExportSource struct {
	Model            string    `json:"model"`
	Server           string    `json:"server,omitempty"`
	Since            time.Time `json:"since,omitzero"`
	Until            time.Time `json:"until,omitzero"`
	Version          int       `json:"version,omitempty"`
	WithOutcomesOnly bool      `json:"with_outcomes_only"`
	First            time.Time `json:"first,omitzero"`
	Last             time.Time `json:"last,omitzero"`
	Logged           int       `json:"logged_rows"`
	Rows             int       `json:"rows"`
	WithOutcomes     int       `json:"rows_with_outcomes"`
	ExportedAt       time.Time `json:"exported_at"`
}

// SourceSidecar names the file beside an export that describes it.
func SourceSidecar(dataPath string) string { return dataPath + ".source.json" }

// ReadExportSource reads the sidecar of dataPath, or returns nil when there is
// none (a file that did not come from an export).
func ReadExportSource(dataPath string) (*ExportSource, error) {
	b, err := os.ReadFile(SourceSidecar(dataPath))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var src ExportSource
	if err := json.Unmarshal(b, &src); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrData, SourceSidecar(dataPath), err)
	}
	return &src, nil
}

// DataInfo summarises the data a card was computed from.
type DataInfo struct {
	Rows     int                `json:"rows"`
	Features map[string]Summary `json:"features"`
	Label    *Summary           `json:"label,omitempty"`
}

// Reference holds the histograms drift is measured against.
type Reference = artifact.Reference

// GoldenInputs returns n rows of width features drawn uniformly from [0,1] by a
// PCG seeded with seed.
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

// Golden runs rows through run and records the outputs it gives.
func Golden(run Runner, rows [][]float32, outputs int) ([]artifact.Golden, error) {
	n := len(rows)
	if n == 0 {
		return nil, fmt.Errorf("golden outputs: no rows")
	}
	flat := make([]float32, 0, n*len(rows[0]))
	for _, r := range rows {
		flat = append(flat, r...)
	}
	out, err := run(flat, n)
	if err != nil {
		return nil, fmt.Errorf("golden outputs: %w", err)
	}
	if len(out) != n*outputs {
		return nil, fmt.Errorf("golden outputs: %d values for %d rows of %d", len(out), n, outputs)
	}
	gs := make([]artifact.Golden, n)
	for i, r := range rows {
		g := artifact.Golden{Input: make([]float64, len(r)), Output: make([]float64, outputs)}
		for j, v := range r {
			g.Input[j] = float64(v)
		}
		for j := range g.Output {
			g.Output[j] = float64(out[i*outputs+j])
		}
		gs[i] = g
	}
	return gs, nil
}

// Rows32 converts the first n rows of d to float32 (all rows when n ≤ 0).
func (d *Dataset) Rows32(n int) [][]float32 {
	if n <= 0 || n > d.Len() {
		n = d.Len()
	}
	rows := make([][]float32, n)
	for r := 0; r < n; r++ {
		rows[r] = make([]float32, len(d.X[r]))
		for i, v := range d.X[r] {
			rows[r][i] = float32(v)
		}
	}
	return rows
}

// Describe fills a card's data summary and reference histograms from d and the
// model's predictions on it (one per row).
func (c *Card) Describe(d *Dataset, pred []float64) {
	c.Data = DataInfo{Rows: d.Len(), Features: map[string]Summary{}}
	c.Reference = Reference{Features: map[string]Histogram{}, Prediction: Deciles(pred)}
	for i, name := range d.Features {
		col := d.Column(i)
		c.Data.Features[name] = Summarize(col)
		c.Reference.Features[name] = Deciles(col)
	}
	if d.HasLabel {
		s := Summarize(d.Y)
		c.Data.Label = &s
	}
}
