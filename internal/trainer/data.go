package trainer

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
)

// Dims are the 12 paired preference dimensions of users and spots.
var Dims = []string{"music", "food", "nightlife", "outdoors", "culture", "sports", "quiet", "budget", "family", "novelty", "wellness", "shopping"}

// ContextFeatures and TimingFeatures complete the 39 calling-score features.
var (
	ContextFeatures = []string{"ctx_weather", "ctx_temperature", "ctx_crowd", "ctx_distance", "ctx_rating", "ctx_price", "ctx_friends_nearby", "ctx_event_nearby", "ctx_transit", "ctx_daylight"}
	TimingFeatures  = []string{"time_hour_fit", "time_day_fit", "time_recency", "time_season_fit", "time_open_now"}
)

// FeatureNames returns the 39 calling-score feature names in input order:
// user_<dim> ×12, spot_<dim> ×12, the 10 context and the 5 timing features.
func FeatureNames() []string {
	var names []string
	for _, d := range Dims {
		names = append(names, "user_"+d)
	}
	for _, d := range Dims {
		names = append(names, "spot_"+d)
	}
	names = append(names, ContextFeatures...)
	return append(names, TimingFeatures...)
}

// LabelColumn names the target in data files.
const LabelColumn = "label"

// Dataset is rows of features with a label each (NaN labels when the data had
// none: see HasLabel).
type Dataset struct {
	Features []string
	X        [][]float64
	Y        []float64
	HasLabel bool
}

// Len is the number of rows.
func (d *Dataset) Len() int { return len(d.Y) }

// Generate draws n calling-score samples from a PCG seeded with seed.
//
// Users have three latent tastes z ~ N(0,1)³; each user dimension is
// σ(a_i·z + 0.5·ε). Half of the spots are picked to suit the user (each spot
// dimension is the user's plus N(0,0.15) noise), the rest at random (U(0,1)), so
// alignment varies the way it does in real recommendations. Context features are
// correlated: temperature follows weather, daylight follows the hour fit, the crowd
// follows nearby events, transit falls with distance, price rises with rating.
// Timing features are uniform but for open_now, which is 1 for 80% of the spots.
// Every feature is clipped to [0,1].
//
// The label is σ(ℓ) with
//
//	align  = Σ u_i·(1−|u_i−s_i|)² / Σ u_i                (alignment weighted by what the user cares about)
//	ctx    = 0.3·weather·daylight + 0.25·(1−distance)² + 0.2·rating·(1−price)
//	         + 0.15·friends·user_nightlife + 0.1·event·(1−user_quiet)
//	timing = open_now·(0.5·hour_fit + 0.3·day_fit + 0.2·season_fit) − 0.3·recency²
//	ℓ      = 6·(align−0.55) + 3·(ctx−0.3) + 2.5·(timing−0.3) + 2·align·timing + N(0, 0.25)
//
// which is not the fallback rules' linear blend, so a model has something to learn.
//
// The seed decides both the population (how user dimensions load on the tastes)
// and the draws; GenerateFrom separates the two.
func Generate(n int, seed uint64) *Dataset { return GenerateFrom(n, seed, seed) }

// GenerateFrom draws n samples of the population that population seeds, with
// the draws seeded by sample. Two data sets of one population (a model's
// training data and its successor's) differ in their rows but not in how the
// features relate; GenerateFrom(n, s, s) is Generate(n, s).
func GenerateFrom(n int, population, sample uint64) *Dataset {
	load := loadings(rand.New(rand.NewPCG(population, 0xca11)))
	rng := rand.New(rand.NewPCG(sample, 0xca11))
	loadings(rng) // the draws start where Generate's single stream did after the loadings
	d := &Dataset{Features: FeatureNames(), X: make([][]float64, n), Y: make([]float64, n), HasLabel: true}
	for r := 0; r < n; r++ {
		x := make([]float64, 39)
		z := [3]float64{normal(rng), normal(rng), normal(rng)}
		for i := 0; i < 12; i++ {
			a := load[i][0]*z[0] + load[i][1]*z[1] + load[i][2]*z[2]
			x[i] = sigmoid(0.8*a + 0.5*normal(rng))
		}
		suited := rng.Float64() < 0.5
		for i := 0; i < 12; i++ {
			if suited {
				x[12+i] = clip01(x[i] + 0.15*normal(rng))
			} else {
				x[12+i] = rng.Float64()
			}
		}
		c := x[24:34]
		weather := rng.Float64()
		c[0] = weather
		c[1] = clip01(0.7*weather + 0.3*rng.Float64())
		event := rng.Float64()
		c[7] = event
		c[2] = clip01(0.6*event + 0.4*rng.Float64())
		dist := rng.Float64()
		c[3] = dist
		c[8] = clip01(1 - dist + 0.2*normal(rng))
		rating := clip01(0.6 + 0.2*normal(rng))
		c[4] = rating
		c[5] = clip01(0.5*rating + 0.5*rng.Float64())
		c[6] = rng.Float64()
		t := x[34:39]
		t[0] = rng.Float64()
		t[1] = rng.Float64()
		t[2] = rng.Float64()
		t[3] = rng.Float64()
		if rng.Float64() < 0.8 {
			t[4] = 1
		}
		c[9] = clip01(0.6*t[0] + 0.4*rng.Float64())
		d.X[r] = x
		d.Y[r] = label(x, normal(rng))
	}
	return d
}

// loadings draws how each of the 12 user dimensions loads on the three latent
// tastes: the population.
func loadings(rng *rand.Rand) [12][3]float64 {
	var load [12][3]float64
	for i := range load {
		for j := range load[i] {
			load[i][j] = normal(rng)
		}
	}
	return load
}

func label(x []float64, noise float64) float64 {
	var num, den float64
	for i := 0; i < 12; i++ {
		a := 1 - math.Abs(x[i]-x[12+i])
		num += x[i] * a * a
		den += x[i]
	}
	align := num / math.Max(den, 1e-6)
	c, t := x[24:34], x[34:39]
	ctx := 0.3*c[0]*c[9] + 0.25*(1-c[3])*(1-c[3]) + 0.2*c[4]*(1-c[5]) + 0.15*c[6]*x[2] + 0.1*c[7]*(1-x[6])
	timing := t[4]*(0.5*t[0]+0.3*t[1]+0.2*t[3]) - 0.3*t[2]*t[2]
	l := 6*(align-0.55) + 3*(ctx-0.3) + 2.5*(timing-0.3) + 2*align*timing + 0.25*noise
	return sigmoid(l)
}

func clip01(v float64) float64 { return math.Min(1, math.Max(0, v)) }

// WriteFile writes d as CSV, or as JSON lines when path ends in .jsonl; the header
// (or every object) names the features and the label.
func (d *Dataset) WriteFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if strings.HasSuffix(path, ".jsonl") {
		for r := range d.X {
			obj := make(map[string]float64, len(d.Features)+1)
			for i, name := range d.Features {
				obj[name] = d.X[r][i]
			}
			obj[LabelColumn] = d.Y[r]
			b, _ := json.Marshal(obj)
			w.Write(append(b, '\n'))
		}
	} else {
		w.WriteString(strings.Join(append(append([]string{}, d.Features...), LabelColumn), ",") + "\n")
		for r := range d.X {
			for i, v := range d.X[r] {
				if i > 0 {
					w.WriteByte(',')
				}
				w.WriteString(strconv.FormatFloat(v, 'g', 8, 64))
			}
			w.WriteString("," + strconv.FormatFloat(d.Y[r], 'g', 8, 64) + "\n")
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ErrData marks a data file that cannot be read as a dataset.
var ErrData = errors.New("bad data file")

// ReadFile reads a CSV (header of feature names plus label) or JSON lines file
// (.jsonl) with the given feature columns, in that order; other columns are
// ignored. withLabel says whether the label column is required; when it is not,
// a label is read if the data has one. Errors name the file and line.
func ReadFile(path string, features []string, withLabel bool) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var d *Dataset
	switch {
	case strings.HasSuffix(path, ".parquet"):
		d, err = readParquet(path, f, features, withLabel)
	case strings.HasSuffix(path, ".jsonl"):
		d, err = readJSONL(path, f, features, withLabel)
	default:
		d, err = readCSV(path, f, features, withLabel)
	}
	if err != nil {
		return nil, err
	}
	if d.Len() == 0 {
		return nil, fmt.Errorf("%w: %s: no data rows", ErrData, path)
	}
	return d, nil
}

func readCSV(path string, r io.Reader, features []string, withLabel bool) (*Dataset, error) {
	cr := csv.NewReader(bufio.NewReader(r))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: %s: empty file (want a header of feature names and %q)", ErrData, path, LabelColumn)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrData, path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	if _, ok := col[LabelColumn]; ok {
		withLabel = true
	}
	want := features
	if withLabel {
		want = append(append([]string{}, features...), LabelColumn)
	}
	idx := make([]int, len(want))
	for i, name := range want {
		j, ok := col[name]
		if !ok {
			return nil, fmt.Errorf("%w: %s line 1: missing column %q", ErrData, path, name)
		}
		idx[i] = j
	}
	d := &Dataset{Features: features, HasLabel: withLabel}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %v", ErrData, path, line, err)
		}
		x := make([]float64, len(features))
		for i, j := range idx {
			v, err := strconv.ParseFloat(strings.TrimSpace(rec[j]), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%w: %s line %d: column %q: %q is not a finite number", ErrData, path, line, want[i], rec[j])
			}
			if i < len(features) {
				x[i] = v
			} else {
				d.Y = append(d.Y, v)
			}
		}
		if !withLabel {
			d.Y = append(d.Y, math.NaN())
		}
		d.X = append(d.X, x)
	}
	return d, nil
}

func readJSONL(path string, r io.Reader, features []string, withLabel bool) (*Dataset, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	d := &Dataset{Features: features}
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(text), &obj); err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %v", ErrData, path, line, err)
		}
		get := func(name string) (float64, error) {
			raw, ok := obj[name]
			if !ok {
				return 0, fmt.Errorf("%w: %s line %d: missing field %q", ErrData, path, line, name)
			}
			v, ok := raw.(float64)
			if !ok {
				return 0, fmt.Errorf("%w: %s line %d: field %q: %v is not a number", ErrData, path, line, name, raw)
			}
			return v, nil
		}
		x := make([]float64, len(features))
		for i, name := range features {
			v, err := get(name)
			if err != nil {
				return nil, err
			}
			x[i] = v
		}
		if len(d.X) == 0 {
			_, has := obj[LabelColumn]
			withLabel = withLabel || has
			d.HasLabel = withLabel
		}
		y := math.NaN()
		if withLabel {
			v, err := get(LabelColumn)
			if err != nil {
				return nil, err
			}
			y = v
		}
		d.X = append(d.X, x)
		d.Y = append(d.Y, y)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrData, path, err)
	}
	return d, nil
}
