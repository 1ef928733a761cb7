package eval

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func TestFigures(t *testing.T) {
	y := []float64{0, 1, 0, 1}
	r, err := Compare(y, []Predictions{{Name: "v1", Values: []float64{0.1, 0.9, 0.2, 0.8}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := r.Figures[0]
	if !near(f.MSE, 0.025) || !near(f.MAE, 0.15) || !near(f.R2, 0.9) {
		t.Errorf("MSE %v MAE %v R² %v, want 0.025 0.15 0.9", f.MSE, f.MAE, f.R2)
	}
	if len(r.Differences) != 0 {
		t.Errorf("one scorer has no differences, got %v", r.Differences)
	}
}

// draw makes outcomes y = p + noise and a scorer that predicts p with its own
// error of the given size.
func draw(rng *rand.Rand, n int, p []float64, errSize float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = p[i] + errSize*rng.NormFloat64()
	}
	return out
}

func population(rng *rand.Rand, n int) (p, y []float64) {
	p, y = make([]float64, n), make([]float64, n)
	for i := range p {
		p[i] = rng.Float64()
		y[i] = p[i] + 0.1*rng.NormFloat64()
	}
	return p, y
}

func TestABetterScorerIsSeenBetterAndAWorseOneWorse(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	p, y := population(rng, 2000)
	base := draw(rng, 2000, p, 0.10)
	better := draw(rng, 2000, p, 0.05)
	worse := draw(rng, 2000, p, 0.15)
	r, err := Compare(y, []Predictions{{"v1", base}, {"v2", better}, {"v3", worse}}, Options{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Differences[0]; d.Verdict != "better" || d.High >= 0 || d.Low > d.MSE || d.MSE > d.High {
		t.Errorf("v2 against v1: %+v, want better with the difference inside its interval", d)
	}
	if d := r.Differences[1]; d.Verdict != "worse" || d.Low <= 0 {
		t.Errorf("v3 against v1: %+v, want worse", d)
	}
	same, _ := Compare(y, []Predictions{{"v1", base}, {"v1 again", base}}, Options{Seed: 3})
	if d := same.Differences[0]; d.Verdict != "no clear difference" || d.Low != 0 || d.High != 0 {
		t.Errorf("a scorer against itself: %+v, want a zero interval", d)
	}
}

// Two scorers of equal quality are called different no more often than the
// confidence allows: the false-verdict rate over many data sets.
func TestEqualScorersAreRarelyCalledDifferent(t *testing.T) {
	const runs = 200
	rng := rand.New(rand.NewPCG(7, 8))
	wrong := 0
	for range runs {
		p, y := population(rng, 300)
		r, err := Compare(y, []Predictions{{"a", draw(rng, 300, p, 0.1)}, {"b", draw(rng, 300, p, 0.1)}}, Options{Resamples: 400, Seed: rng.Uint64()})
		if err != nil {
			t.Fatal(err)
		}
		if r.Differences[0].Verdict != "no clear difference" {
			wrong++
		}
	}
	// 95% intervals: about 5% of runs by chance; 10% allows for the bootstrap's
	// own error at 400 resamples.
	if wrong > runs/10 {
		t.Errorf("equal scorers called different in %d of %d runs, want at most %d", wrong, runs, runs/10)
	}
}

func TestCalibration(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	n := 5000
	p, y := make([]float64, n), make([]float64, n)
	for i := range p {
		p[i] = rng.Float64()
		if rng.Float64() < p[i] {
			y[i] = 1
		}
	}
	skewed := make([]float64, n)
	for i, v := range p {
		skewed[i] = v * v
	}
	r, err := Compare(y, []Predictions{{"calibrated", p}, {"skewed", skewed}}, Options{Resamples: 100})
	if err != nil {
		t.Fatal(err)
	}
	cal, sk := r.Figures[0], r.Figures[1]
	if len(cal.Calibration) != 10 || cal.Calibration[0].Rows != n/10 {
		t.Fatalf("calibration bins: %+v", cal.Calibration)
	}
	if cal.CalibrationError > 0.03 || sk.CalibrationError < 0.1 {
		t.Errorf("calibration error %.3f for a calibrated scorer, %.3f for a skewed one; want under 0.03 and over 0.1", cal.CalibrationError, sk.CalibrationError)
	}
	for i := 1; i < len(cal.Calibration); i++ {
		if cal.Calibration[i].Predicted < cal.Calibration[i-1].Predicted {
			t.Errorf("bins are not in order of the prediction: %+v", cal.Calibration)
		}
	}
}

func TestCompareRefusesWhatDoesNotMatch(t *testing.T) {
	y := []float64{0, 1}
	for name, s := range map[string][]Predictions{
		"short": {{"v1", []float64{0}}},
		"NaN":   {{"v1", []float64{0, math.NaN()}}},
	} {
		if _, err := Compare(y, s, Options{}); !errors.Is(err, ErrRows) {
			t.Errorf("%s: %v, want ErrRows", name, err)
		}
	}
	if _, err := Compare(nil, nil, Options{}); !errors.Is(err, ErrRows) {
		t.Errorf("no rows: %v, want ErrRows", err)
	}
}
