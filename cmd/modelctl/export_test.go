package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/predlog"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/trainer"
	"github.com/modelops/modelops/internal/wire"
)

// openControlPlane opens a control plane on dataDir (and store, if set), to
// be closed by the caller (or at cleanup).
func openControlPlane(t *testing.T, dataDir, store string) *app.ControlPlane {
	t.Helper()
	cfg := app.DefaultControlPlaneConfig()
	cfg.AdminToken = testToken
	cfg.DataDir = dataDir
	cfg.Store = store
	cfg.Listen = "127.0.0.1:0"
	cp := app.NewControlPlane(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := cp.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close(context.Background()) })
	return cp
}

func TestExportFileStore(t *testing.T) { runExport(t, "") }

func TestExportS3(t *testing.T) {
	srv := testutil.MustS3(t, "modelops")
	runExport(t, srv.StoreURL("modelops", "cp", ""))
}

// runExport ships a scorer's sampled rows and, later, their outcomes; checks
// that forged, oversized and bad batches are refused and change nothing;
// restarts the control plane; exports with each filter in each format; and
// trains on the export, whose card says where its data came from (row 399
// has no outcome, so the rows with outcomes end at 398).
func runExport(t *testing.T, store string) {
	ctx := context.Background()
	dataDir := t.TempDir()
	cp := openControlPlane(t, dataDir, store)
	url := cp.URL()
	shipped := filepath.Join("..", "..", "models", "calling_score")
	if _, _, err := cli(t, url, "push", filepath.Join(shipped, "model.onnx"), "--model", "calling-score", "--card", filepath.Join(shipped, "card.json")); err != nil {
		t.Fatal(err)
	}
	admin := client.New(url)
	admin.Token = testToken
	tok, err := admin.CreateTokenFor(ctx, wire.TokenBody{Name: "scorer-a", Role: registry.RoleScorer, Node: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	scorer := client.New(url)
	scorer.Token = tok.Secret

	// 400 rows of the shipped model's population: the first 200 answered by
	// v1 three hours ago, the rest by v2 one hour ago; outcomes (the labels)
	// for three rows in four, shipped after all the rows.
	d := trainer.GenerateFrom(400, 42, 5)
	now := time.Now().UTC().Truncate(time.Second)
	row := func(i int) predlog.Row {
		v, at := 1, now.Add(-3*time.Hour)
		if i >= 200 {
			v, at = 2, now.Add(-time.Hour)
		}
		f := make([]float32, len(d.X[i]))
		for j, x := range d.X[i] {
			f[j] = float32(x)
		}
		return predlog.Row{Model: "calling-score", Version: v, Arm: "production", Source: "model", RequestID: fmt.Sprint("req-", i),
			Time: at.Add(time.Duration(i) * time.Second), Features: f, Answer: 0.5}
	}
	for lo := 0; lo < 400; lo += 200 {
		b := &predlog.Batch{Node: "node-a"}
		for i := lo; i < lo+200; i++ {
			b.Rows = append(b.Rows, row(i))
		}
		if got, err := scorer.ShipLog(ctx, b); err != nil || got.Rows != 200 {
			t.Fatalf("ship rows %d…: %+v %v", lo, got, err)
		}
	}
	outcomes := &predlog.Batch{Node: "node-a"}
	for i := 0; i < 400; i++ {
		if i%4 != 3 {
			outcomes.Outcomes = append(outcomes.Outcomes, predlog.Outcome{Model: "calling-score", RequestID: fmt.Sprint("req-", i), Time: now, Outcome: d.Y[i]})
		}
	}
	if got, err := scorer.ShipLog(ctx, outcomes); err != nil || got.Outcomes != 300 {
		t.Fatalf("ship outcomes: %+v %v", got, err)
	}

	// Refused: not a scorer token, another node's name, too many rows, a
	// body over the byte limit, a bad row, an unknown model.
	one := &predlog.Batch{Node: "node-a", Rows: []predlog.Row{row(0)}}
	one.Rows[0].RequestID = "forged"
	big := &predlog.Batch{Node: "node-a"}
	for range predlog.MaxBatchRows + 1 {
		big.Rows = append(big.Rows, one.Rows[0])
	}
	for _, tc := range []struct {
		name   string
		cl     *client.Client
		b      *predlog.Batch
		status int
	}{
		{"admin token", admin, one, http.StatusForbidden},
		{"another node", scorer, &predlog.Batch{Node: "node-b", Rows: one.Rows}, http.StatusForbidden},
		{"too many rows", scorer, big, http.StatusRequestEntityTooLarge},
		{"no request id", scorer, &predlog.Batch{Node: "node-a", Rows: []predlog.Row{{Model: "calling-score", Time: now, Features: []float32{1}}}}, http.StatusBadRequest},
		{"unknown model", scorer, &predlog.Batch{Node: "node-a", Rows: []predlog.Row{{Model: "nope", RequestID: "x", Time: now, Features: []float32{1}}}}, http.StatusNotFound},
	} {
		if _, err := tc.cl.ShipLog(ctx, tc.b); client.StatusOf(err) != tc.status {
			t.Errorf("%s: %v, want HTTP %d", tc.name, err, tc.status)
		}
	}
	huge := strings.NewReader(`{"node":"node-a","rows":[` + strings.Repeat(" ", predlog.MaxBatchBytes) + `]}`)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/v1/logs", huge)
	req.Header.Set("Authorization", "Bearer "+tok.Secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over %d bytes: %v %v, want 413", predlog.MaxBatchBytes, resp, err)
	} else {
		resp.Body.Close()
	}

	// Exports are for admin and viewer tokens, not a node's.
	if _, err := scorer.Export(ctx, "calling-score", client.ExportOptions{}, func(predlog.ExportRow) error { return nil }); client.StatusOf(err) != http.StatusForbidden {
		t.Errorf("export with a scorer token: %v, want 403", err)
	}
	viewerTok, err := admin.CreateTokenFor(ctx, wire.TokenBody{Name: "viewer", Role: registry.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	viewer := client.New(url)
	viewer.Token = viewerTok.Secret
	n := 0
	if sum, err := viewer.Export(ctx, "calling-score", client.ExportOptions{Version: 1}, func(predlog.ExportRow) error { n++; return nil }); err != nil || n != 200 || sum.Rows != 200 || sum.Outcomes != 300 {
		t.Errorf("viewer export of v1: %d rows, %+v %v; want 200 rows and 300 outcomes read", n, sum, err)
	}

	// Restarted between ingestion and export: every acknowledged row is there.
	if err := cp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	url = openControlPlane(t, dataDir, store).URL()

	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		rows int
	}{
		{"all.csv", nil, 400},
		{"outcomes.jsonl", []string{"--with-outcomes-only"}, 300},
		{"v2.csv", []string{"--version", "2"}, 200},
		{"recent.jsonl", []string{"--since", "2h"}, 200},
		{"window.csv", []string{"--since", now.Add(-4 * time.Hour).Format(time.RFC3339), "--until", now.Add(-3*time.Hour + 100*time.Second).Format(time.RFC3339)}, 100},
	} {
		out := filepath.Join(dir, tc.name)
		args := append([]string{"export", "calling-score", "--out", out, "-o", "json"}, tc.args...)
		stdout, _, err := cli(t, url, args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got struct {
			Rows int `json:"rows"`
		}
		if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.Rows != tc.rows {
			t.Errorf("%s: %q %v, want %d rows", tc.name, stdout, err, tc.rows)
		}
		if n := countLines(t, out); strings.HasSuffix(out, ".csv") && n != tc.rows+1 || strings.HasSuffix(out, ".jsonl") && n != tc.rows {
			t.Errorf("%s: %d lines for %d rows", tc.name, n, tc.rows)
		}
	}
	// The rows with outcomes are training data as exported.
	ds, err := trainer.ReadFile(filepath.Join(dir, "outcomes.jsonl"), trainer.FeatureNames(), true)
	if err != nil || ds.Len() != 300 {
		t.Fatalf("read the jsonl export: %v", err)
	}
	if _, _, err := cli(t, url, "export", "calling-score", "--out", filepath.Join(dir, "bad.txt")); err == nil {
		t.Error("export to .txt: no error")
	}
	if _, _, err := cli(t, url, "export", "calling-score", "--out", filepath.Join(dir, "x.csv"), "--since", "yesterday"); err == nil {
		t.Error("export --since yesterday: no error")
	}

	// Parquet, trained on directly; the card names the export.
	pq := filepath.Join(dir, "train.parquet")
	if _, _, err := cli(t, url, "export", "calling-score", "--with-outcomes-only", "--out", pq); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli(t, url, "train", "--data", pq, "--epochs", "2", "--quiet", "--out", filepath.Join(dir, "model")); err != nil {
		t.Fatalf("train on the export: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "model", "card.json"))
	if err != nil {
		t.Fatal(err)
	}
	var card trainer.Card
	if err := json.Unmarshal(raw, &card); err != nil {
		t.Fatal(err)
	}
	src := card.Training.Export
	if src == nil || src.Model != "calling-score" || src.Rows != 300 || src.WithOutcomes != 300 || src.Logged != 400 || !src.WithOutcomesOnly ||
		!src.First.Equal(row(0).Time) || !src.Last.Equal(row(398).Time) || !strings.Contains(card.Training.Source, "export of calling-score") {
		t.Errorf("card's training: %+v, export %+v", card.Training, src)
	}
	if n := card.Training.TrainRows + card.Training.ValRows + card.Training.TestRows; n != 300 {
		t.Errorf("trained on %d rows, want the export's 300", n)
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
	}
	return n
}
