package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/trainer"
)

func smallTrain(t *testing.T, seed uint64, out string) *trainReport {
	t.Helper()
	cfg := trainer.DefaultConfig()
	cfg.Seed, cfg.Epochs, cfg.Hidden = seed, 4, []int{32, 16}
	rep, err := runTrain(context.Background(), trainOptions{samples: 800, population: cfg.Seed, out: out, cfg: cfg, quiet: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestTrainWritesAVerifiedDeterministicModel(t *testing.T) {
	a := smallTrain(t, 11, t.TempDir())
	b := smallTrain(t, 11, t.TempDir())
	for _, f := range []func(*trainReport) string{
		func(r *trainReport) string { return r.ModelPath },
		func(r *trainReport) string { return r.CardPath },
	} {
		if fileSum(t, f(a)) != fileSum(t, f(b)) {
			t.Fatalf("%s differs between two runs with one seed", filepath.Base(f(a)))
		}
	}
	if a.Parity > parityTolerance {
		t.Fatalf("parity %g above %g", a.Parity, parityTolerance)
	}
	var card trainer.Card
	if err := json.Unmarshal([]byte(mustReadFile(t, a.CardPath)), &card); err != nil {
		t.Fatal(err)
	}
	if len(card.Golden) != goldenRows || len(card.Features) != 39 || len(card.Reference.Features) != 39 || len(card.Reference.Prediction.Edges) == 0 {
		t.Fatalf("card: %d golden, %d features, %d reference histograms", len(card.Golden), len(card.Features), len(card.Reference.Features))
	}
	if card.Export.Opset != trainer.OpsetVersion || card.Export.IRVersion != trainer.IRVersion {
		t.Fatalf("card export info %+v", card.Export)
	}
	if _, ok := card.Metrics["test_fallback"]; !ok {
		t.Fatal("card has no fallback metrics")
	}
}

func mustReadFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPushRefusesATamperedWeight(t *testing.T) {
	url := mustControlPlane(t)
	rep := smallTrain(t, 3, t.TempDir())
	mlp := rep.Result.MLP
	mlp.Layers[1].W[5] += 0.5
	onnx, err := trainer.ExportONNX(mlp, trainer.ExportMeta{GraphName: "calling_score", ProducerVersion: trainer.FormatVersion})
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(t.TempDir(), "model.onnx")
	os.WriteFile(tampered, onnx, 0o644)
	_, _, err = cli(t, url, "push", tampered, "--model", "calling-score", "--card", rep.CardPath)
	if err == nil || !strings.Contains(err.Error(), "HTTP 422") || !strings.Contains(err.Error(), "golden[") {
		t.Fatalf("push of a tampered model with the original card: %v, want 422 naming the golden input", err)
	}
	if _, _, err := cli(t, url, "push", rep.ModelPath, "--model", "calling-score", "--card", rep.CardPath); err != nil {
		t.Fatalf("the untampered model: %v", err)
	}
}

func TestCardForOutsideModels(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data.csv")
	if _, _, err := cli(t, "", "gen-data", "--samples", "300", "--seed", "4", "--out", data); err != nil {
		t.Fatal(err)
	}
	rep := smallTrain(t, 4, filepath.Join(dir, "m"))
	card := filepath.Join(dir, "card.json")
	out, warn, err := cli(t, "", "card", rep.ModelPath, "--data", data, "--out", card)
	if err != nil || !strings.Contains(out, "32 golden inputs") {
		t.Fatalf("card: %q %v", out, err)
	}
	if !strings.Contains(warn, "deciles of 300 rows are rough") {
		t.Errorf("a card from 300 rows: no warning that its reference is rough (stderr %q)", warn)
	}
	big := filepath.Join(dir, "big.csv")
	if _, _, err := cli(t, "", "gen-data", "--samples", "1000", "--seed", "5", "--out", big); err != nil {
		t.Fatal(err)
	}
	if _, warn, err := cli(t, "", "card", rep.ModelPath, "--data", big, "--out", filepath.Join(dir, "big.json")); err != nil || warn != "" {
		t.Errorf("a card from 1,000 rows: %v, stderr %q", err, warn)
	}
	url := mustControlPlane(t)
	if _, _, err := cli(t, url, "push", rep.ModelPath, "--model", "calling-score", "--card", card); err != nil {
		t.Fatalf("push with a card made by `modelctl card`: %v", err)
	}

	// A model of the wrong input width gets no card.
	wide, err := trainer.ExportONNX(trainer.NewMLP(1, 40, 4, 1), trainer.ExportMeta{})
	if err != nil {
		t.Fatal(err)
	}
	widePath := filepath.Join(dir, "wide.onnx")
	os.WriteFile(widePath, wide, 0o644)
	if _, _, err := cli(t, "", "card", widePath, "--data", data, "--out", filepath.Join(dir, "wide.json")); err == nil || !strings.Contains(err.Error(), "takes 40 features") {
		t.Fatalf("card for a 40-wide model: %v", err)
	}
}

func TestShippedModelMeetsItsTarget(t *testing.T) {
	var card trainer.Card
	if err := json.Unmarshal([]byte(mustReadFile(t, "../../models/calling_score/card.json")), &card); err != nil {
		t.Fatal(err)
	}
	model, fb := card.Metrics["test_model"], card.Metrics["test_fallback"]
	if !(model.MSE <= 0.7*fb.MSE) {
		t.Fatalf("shipped model test MSE %v is not 30%% below the fallback's %v", model.MSE, fb.MSE)
	}
}

// TestShippedModelIsReproducible rebuilds models/calling_score the way `make model`
// does, with a binary built without the race detector, and compares the bytes.
func TestShippedModelIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("short: retrains the shipped model (about 20 s)")
	}
	bin := filepath.Join(t.TempDir(), "modelctl")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := t.TempDir()
	train := exec.Command(bin, "train", "--seed", "42", "--samples", "10000", "--quiet", "--out", out)
	if b, err := train.CombinedOutput(); err != nil {
		t.Fatalf("train: %v\n%s", err, b)
	}
	for _, f := range []string{"model.onnx", "card.json"} {
		if got, want := fileSum(t, filepath.Join(out, f)), fileSum(t, filepath.Join("../../models/calling_score", f)); got != want {
			t.Errorf("%s: retrained sha256 %s, shipped %s: run `make model` and commit", f, got, want)
		}
	}
}

// A model that does worse than the rules is told so plainly, not as "-92%
// lower"; a setting out of range is named by its flag.
func TestTrainSaysWhenTheRulesAnswerBetter(t *testing.T) {
	dir := t.TempDir()
	url := "http://127.0.0.1:1" // train needs no control plane
	if _, _, err := cli(t, url, "gen-data", "--samples", "300", "--out", filepath.Join(dir, "d.csv")); err != nil {
		t.Fatal(err)
	}
	out, _, err := cli(t, url, "train", "--data", filepath.Join(dir, "d.csv"), "--epochs", "1", "--quiet", "--out", filepath.Join(dir, "m"))
	if err != nil || !strings.Contains(out, "HIGHER than the fallback rules'") || strings.Contains(out, "% lower than") {
		t.Fatalf("one epoch on 300 rows: %v\n%s", err, out)
	}
	for _, bad := range []struct{ flag, value, want string }{
		{"--epochs", "0", "--epochs 0: want 1 or more"},
		{"--batch", "-2", "--batch -2: want 1 or more"},
		{"--lr", "0", "--lr 0: want a number more than 0"},
		{"--samples", "3", "--samples 3: want at least 20"},
	} {
		if _, _, err := cli(t, url, "train", bad.flag, bad.value, "--out", filepath.Join(dir, "x")); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("train %s %s: %v, want %q", bad.flag, bad.value, err, bad.want)
		}
	}
}
