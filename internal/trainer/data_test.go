package trainer

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestGeneratedDataRoundTrips(t *testing.T) {
	d := Generate(50, 3)
	for _, ext := range []string{".csv", ".jsonl"} {
		p := filepath.Join(t.TempDir(), "data"+ext)
		if err := d.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		got, err := ReadFile(p, FeatureNames(), true)
		if err != nil {
			t.Fatalf("%s: %v", ext, err)
		}
		if got.Len() != 50 || !got.HasLabel {
			t.Fatalf("%s: %d rows, label %v", ext, got.Len(), got.HasLabel)
		}
		for r := range d.X {
			for i := range d.X[r] {
				if math.Abs(got.X[r][i]-d.X[r][i]) > 1e-7 {
					t.Fatalf("%s: row %d feature %d: %v, wrote %v", ext, r, i, got.X[r][i], d.X[r][i])
				}
			}
		}
	}
}

func TestGeneratedDataIsInRangeAndNotTheRules(t *testing.T) {
	d := Generate(2000, 1)
	var lo, hi int
	for r, x := range d.X {
		for i, v := range x {
			if v < 0 || v > 1 {
				t.Fatalf("row %d feature %s = %v, outside [0,1]", r, d.Features[i], v)
			}
		}
		if d.Y[r] < 0.2 {
			lo++
		}
		if d.Y[r] > 0.8 {
			hi++
		}
	}
	if lo < 100 || hi < 100 {
		t.Fatalf("labels bunch up: %d below 0.2, %d above 0.8 of 2000", lo, hi)
	}
}

func TestBadDataFilesNameFileAndLine(t *testing.T) {
	header := strings.Join(append(FeatureNames(), LabelColumn), ",")
	row := strings.TrimSuffix(strings.Repeat("0.5,", 40), ",")
	badRow := strings.Replace(row, "0.5", "abc", 1)
	tests := []struct {
		name, file, body, want string
	}{
		{"empty csv", "d.csv", "", "d.csv: empty file"},
		{"header only", "d.csv", header + "\n", "d.csv: no data rows"},
		{"missing column", "d.csv", strings.Replace(header, "ctx_rating,", "", 1) + "\n" + row + "\n", `d.csv line 1: missing column "ctx_rating"`},
		{"missing label", "d.csv", strings.Join(FeatureNames(), ",") + "\n" + strings.TrimSuffix(strings.Repeat("0.5,", 39), ",") + "\n", `missing column "label"`},
		{"non-numeric", "d.csv", header + "\n" + row + "\n" + badRow + "\n", `d.csv line 3: column "user_music": "abc" is not a finite number`},
		{"NaN", "d.csv", header + "\n" + strings.Replace(row, "0.5", "NaN", 1) + "\n", `line 2: column "user_music": "NaN"`},
		{"short row", "d.csv", header + "\n0.5,0.5\n", "d.csv line 2"},
		{"jsonl missing field", "d.jsonl", `{"user_music":0.5}` + "\n", `d.jsonl line 1: missing field "user_food"`},
		{"jsonl not a number", "d.jsonl", `{"user_music":"x"}` + "\n", `d.jsonl line 1: field "user_music": x is not a number`},
		{"jsonl bad json", "d.jsonl", "{\n", "d.jsonl line 1"},
		{"empty jsonl", "d.jsonl", "", "d.jsonl: no data rows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), tt.file)
			os.WriteFile(p, []byte(tt.body), 0o644)
			_, err := ReadFile(p, FeatureNames(), true)
			if !errors.Is(err, ErrData) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrData saying %q", err, tt.want)
			}
		})
	}
}

func TestTrainIsDeterministicAndLearns(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Epochs = 8
	cfg.Hidden = []int{16, 8}
	d := Generate(1500, 5)
	a, err := Train(d, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Train(d, cfg, nil)
	ea, _ := ExportONNX(a.MLP, ExportMeta{})
	eb, _ := ExportONNX(b.MLP, ExportMeta{})
	if string(ea) != string(eb) {
		t.Fatal("two runs with the same seed exported different bytes")
	}
	first, last := a.Epochs[0].ValLoss, a.Epochs[len(a.Epochs)-1].ValLoss
	if !(last < first) {
		t.Fatalf("validation loss went from %v to %v: not learning", first, last)
	}
	cfg.Seed = 6
	c, _ := Train(d, cfg, nil)
	ec, _ := ExportONNX(c.MLP, ExportMeta{})
	if string(ec) == string(ea) {
		t.Fatal("another seed gave the same weights")
	}
}

func TestFoldedNormalisationTakesRawFeatures(t *testing.T) {
	d := Generate(300, 9)
	nz := FitNormalizer(d)
	rng := rand.New(rand.NewPCG(1, 1))
	n := newNet(rng, []int{39, 8, 1})
	for i := range n.b[0] {
		n.b[0][i] = rng.Float64() - 0.5
	}
	folded := fold(n, nz)
	acts := [][]float64{make([]float64, 39), make([]float64, 8), make([]float64, 1)}
	for r := 0; r < 50; r++ {
		raw, normed := make([]float32, 39), make([]float64, 39)
		for i, v := range d.X[r] {
			raw[i] = float32(v)
			normed[i] = (float64(raw[i]) - nz.Mean[i]) / nz.Std[i]
		}
		want := n.forward(normed, acts, nil)
		got := folded.Forward(raw)[0]
		if math.Abs(float64(got)-want) > 1e-5 {
			t.Fatalf("row %d: folded MLP on raw features %v, network on standardised features %v", r, got, want)
		}
	}
}

func TestDecilesOfUniformValues(t *testing.T) {
	vals := make([]float64, 1000)
	for i := range vals {
		vals[i] = float64(i) / 1000
	}
	h := Deciles(vals)
	if len(h.Edges) != 9 || len(h.Proportions) != 10 {
		t.Fatalf("%d edges, %d bins", len(h.Edges), len(h.Proportions))
	}
	for i, p := range h.Proportions {
		if math.Abs(p-0.1) > 0.002 {
			t.Fatalf("bin %d holds %v, want 0.1", i, p)
		}
	}
	bin := Deciles([]float64{0, 0, 0, 1, 1, 1, 1, 1, 1, 1})
	if len(bin.Edges) != 2 || bin.Proportions[0] != 0.3 || bin.Proportions[1] != 0.7 {
		t.Fatalf("binary feature histogram %+v", bin)
	}
}

func BenchmarkTrainCallingScore10k(b *testing.B) {
	d := Generate(10000, 42)
	for b.Loop() {
		res, err := Train(d, DefaultConfig(), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(res.Epochs)), "epochs")
		b.ReportMetric(res.Duration.Seconds(), "s/train")
	}
}

func TestPortableExpMatchesMath(t *testing.T) {
	for _, x := range []float64{-800, -745.2, -50, -1, -1e-9, 0, 1e-9, 0.5, 1, 3.7, 50, 709, 710} {
		got, want := exp(x), math.Exp(x)
		if got != want && math.Abs(got-want) > 1e-15*math.Abs(want) {
			t.Errorf("exp(%v) = %v, math.Exp says %v", x, got, want)
		}
	}
}

// userCorrelations are the 66 correlations between the 12 user dimensions: how
// the population's tastes hang together.
func userCorrelations(d *Dataset) []float64 {
	var out []float64
	for i := 0; i < 12; i++ {
		for j := i + 1; j < 12; j++ {
			out = append(out, correlation(d.Column(i), d.Column(j)))
		}
	}
	return out
}

func correlation(a, b []float64) float64 {
	var ma, mb float64
	for i := range a {
		ma += a[i]
		mb += b[i]
	}
	ma /= float64(len(a))
	mb /= float64(len(b))
	var sab, saa, sbb float64
	for i := range a {
		sab += (a[i] - ma) * (b[i] - mb)
		saa += (a[i] - ma) * (a[i] - ma)
		sbb += (b[i] - mb) * (b[i] - mb)
	}
	return sab / math.Sqrt(saa*sbb)
}

func largestGap(a, b []float64) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

// A second sample of one population has other rows but the same structure; a
// different population seed changes the structure (the README's walkthrough
// trains v2 on the same population as v1, with other draws).
func TestGenerateFromKeepsThePopulation(t *testing.T) {
	base := Generate(4000, 42)
	same := GenerateFrom(4000, 42, 42)
	for r := range base.X {
		if !slices.Equal(base.X[r], same.X[r]) || base.Y[r] != same.Y[r] {
			t.Fatalf("GenerateFrom(n, 42, 42) row %d differs from Generate(n, 42)", r)
		}
	}
	resample := GenerateFrom(4000, 42, 7)
	if slices.Equal(resample.X[0], base.X[0]) {
		t.Fatal("another sample seed drew the same first row")
	}
	other := Generate(4000, 7)
	within := largestGap(userCorrelations(base), userCorrelations(resample))
	across := largestGap(userCorrelations(base), userCorrelations(other))
	t.Logf("within %.3f across %.3f", within, across)
	if within > 0.1 || across < 3*within {
		t.Errorf("largest gap between the user dimensions' correlations: %.3f for another sample of the population, %.3f for another population; want the first under 0.1 and the second at least 3 times it", within, across)
	}
}
