package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/scorerapi"
	"github.com/modelops/modelops/internal/testutil"
)

func TestMain(m *testing.M) {
	if (len(os.Args) > 1 && os.Args[1] == loader.VerifyCommand) || os.Getenv(runMainEnv) != "" {
		// The control planes under test verify pushes by running their own
		// executable, this test binary, as `modelctl verify-artifact`; and
		// tests run it as modelctl itself, to see its exit code.
		main()
		os.Exit(0)
	}
	testutil.InitORT()
	os.Exit(m.Run())
}

// cli runs modelctl in-process against server and returns stdout, stderr, error.
func cli(t *testing.T, server string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(k string) string {
		switch k {
		case "MODELCTL_SERVER":
			return server
		case "MODELCTL_TOKEN":
			return testToken
		}
		return ""
	}}
	err := e.run(context.Background(), args)
	return out.String(), errb.String(), err
}

// testToken is the admin token of the test control planes.
var testToken = registry.NewTokenSecret()

func mustControlPlane(t *testing.T) string {
	t.Helper()
	cfg := app.DefaultControlPlaneConfig()
	cfg.AdminToken = testToken
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cp := app.NewControlPlane(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := cp.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close(context.Background()) })
	return cp.URL()
}

func TestVerbsAgainstARealControlPlane(t *testing.T) {
	url := mustControlPlane(t)
	dir := t.TempDir()
	for _, seed := range []string{"1", "2"} {
		if _, _, err := cli(t, url, "train", "--seed", seed, "--samples", "300", "--epochs", "3", "--quiet", "--out", filepath.Join(dir, seed)); err != nil {
			t.Fatalf("train: %v", err)
		}
	}
	out, _, err := cli(t, url, "list")
	if err != nil || !strings.Contains(out, "no models yet") {
		t.Fatalf("list on an empty registry: %q %v", out, err)
	}
	out, _, err = cli(t, url, "push", filepath.Join(dir, "1", "model.onnx"), "--model", "calling-score")
	if err != nil || !strings.Contains(out, "pushed calling-score v1") {
		t.Fatalf("push: %q %v", out, err)
	}
	out, _, err = cli(t, url, "push", "-o", "json", "--model", "calling-score", filepath.Join(dir, "2", "model.onnx"))
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	var pushed struct {
		Version registry.Version `json:"version"`
	}
	if err := json.Unmarshal([]byte(out), &pushed); err != nil || pushed.Version.Number != 2 {
		t.Fatalf("push -o json: %q %v", out, err)
	}
	if _, _, err := cli(t, url, "promote", "calling-score", "v1"); err != nil {
		t.Fatal(err)
	}
	out, _, err = cli(t, url, "promote", "calling-score", "2", "--reason", "fresher")
	if err != nil || !strings.Contains(out, "production v1 → v2") {
		t.Fatalf("promote: %q %v", out, err)
	}
	out, _, err = cli(t, url, "show", "calling-score")
	if err != nil || !strings.Contains(out, "production v2") || !strings.Contains(out, "v1") {
		t.Fatalf("show: %q %v", out, err)
	}
	out, _, err = cli(t, url, "show", "calling-score", "1")
	if err != nil || !regexp.MustCompile(`(?s)Features \(39\)\n  user_music, .*Data summary \(210 rows\).*\n  user_music +0\.\d+ .*Metrics\n.*test_model .*Golden inputs\n  32, .*Drift reference\n  39 feature histograms`).MatchString(out) {
		t.Fatalf("show version: %q %v", out, err)
	}
	out, _, err = cli(t, url, "rollback", "calling-score")
	if err != nil || !strings.Contains(out, "production v2 → v1") {
		t.Fatalf("rollback: %q %v", out, err)
	}
	out, _, err = cli(t, url, "history", "calling-score", "-o", "json")
	var evs []registry.Event
	if err != nil || json.Unmarshal([]byte(out), &evs) != nil || len(evs) != 5 || evs[3].Reason != "fresher" {
		t.Fatalf("history: %q %v", out, err)
	}
	// --last shows the newest events; --limit the first ones, and says there
	// may be more.
	out, _, err = cli(t, url, "history", "calling-score", "--last", "2", "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &evs) != nil || len(evs) != 2 || evs[0].Revision != 4 || evs[1].Revision != 5 {
		t.Fatalf("history --last 2: %q %v", out, err)
	}
	out, errOut, err := cli(t, url, "history", "calling-score", "--limit", "2", "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &evs) != nil || len(evs) != 2 || evs[1].Revision != 2 || !strings.Contains(errOut, "--since 2 pages on") {
		t.Fatalf("history --limit 2: %q %q %v", out, errOut, err)
	}
	if _, errOut, err = cli(t, url, "history", "calling-score", "--limit", "5"); err != nil || errOut != "" {
		t.Fatalf("history --limit 5 of 5 events: %q %v", errOut, err)
	}
	out, _, err = cli(t, url, "list", "-o", "json")
	var ms []registry.Model
	if err != nil || json.Unmarshal([]byte(out), &ms) != nil || len(ms) != 1 || ms[0].Production != 1 {
		t.Fatalf("list -o json: %q %v", out, err)
	}
}

func TestVerbsFailWithTheServersMessage(t *testing.T) {
	url := mustControlPlane(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"promote", "calling-score", "1"}, `model "calling-score": not found`},
		{[]string{"promote", "calling-score", "x"}, "want a positive number"},
		{[]string{"rollback", "Bad!"}, "must match"},
		{[]string{"show", "calling-score"}, "HTTP 404"},
		{[]string{"push", "/nonexistent.onnx", "--model", "m"}, "no such file"},
		{[]string{"push", "--model", "m"}, "push needs one FILE"},
		{[]string{"list", "-o", "xml"}, "want table, json, yaml or jsonpath="},
		{[]string{"list", "-o", "jsonpath={.a"}, "unclosed action"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"list", "--server", "localhost:8080"}, `--server "localhost:8080": want an http:// or https:// URL`},
		{[]string{"--server", "localhost:8080", "list"}, `--server "localhost:8080": want an http:// or https:// URL`},
		{[]string{"--bogus", "list"}, `unknown flag: --bogus`},
	}
	for _, tt := range tests {
		_, _, err := cli(t, url, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("modelctl %s: err = %v, want it to contain %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
	// The client flags may also come before the verb.
	if out, _, err := cli(t, "http://127.0.0.1:1", "-o", "json", "--server", url, "list"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("modelctl -o json --server URL list: %q %v", out, err)
	}
	if _, _, err := cli(t, "http://127.0.0.1:1", "list"); err == nil || !strings.Contains(err.Error(), "control plane at http://127.0.0.1:1") || !strings.Contains(err.Error(), "MODELCTL_SERVER") {
		t.Errorf("unreachable server: err = %v", err)
	}
	// Pointed at a scorer, the CLI says the server is not a control plane; a
	// model the control plane does not have keeps its own message.
	scorer := scorerapi.NewServer("127.0.0.1:0", scorerapi.NewScorer(slog.New(slog.NewTextHandler(io.Discard, nil)), scorerapi.NewServed("calling-score", fallback.CallingScore{})).Handler(), slog.New(slog.DiscardHandler))
	if err := scorer.Open(); err != nil {
		t.Fatal(err)
	}
	defer scorer.Close(context.Background())
	if _, _, err := cli(t, scorer.URL(), "list"); err == nil || !strings.Contains(err.Error(), "is it a modelops control plane?") {
		t.Errorf("list against a scorer: err = %v", err)
	}
	if _, _, err := cli(t, url, "show", "nope"); err == nil || !strings.Contains(err.Error(), `model "nope": not found`) || strings.Contains(err.Error(), "control plane?") {
		t.Errorf("show of a model that is not there: err = %v", err)
	}
}

func TestGCVerb(t *testing.T) {
	url := mustControlPlane(t)
	out, _, err := cli(t, url, "gc", "--grace", "0s")
	if err != nil || !strings.Contains(out, "no unreferenced blobs") {
		t.Fatalf("gc on an empty registry: %q %v", out, err)
	}
	if _, _, err := cli(t, url, "gc", "--grace", "soon"); err == nil {
		t.Fatal("gc --grace soon was accepted")
	}
}

func TestCanaryAndBlendVerbs(t *testing.T) {
	url := mustControlPlane(t)
	dir := t.TempDir()
	for _, seed := range []string{"1", "2"} {
		if _, _, err := cli(t, url, "train", "--seed", seed, "--samples", "200", "--epochs", "1", "--quiet", "--out", filepath.Join(dir, seed)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cli(t, url, "push", filepath.Join(dir, seed, "model.onnx"), "--model", "calling-score"); err != nil {
			t.Fatal(err)
		}
	}
	cli(t, url, "promote", "calling-score", "1")
	// A reason given is recorded after what changed, which the history keeps.
	out, _, err := cli(t, url, "canary", "calling-score", "2", "--traffic", "10", "--mode", "shadow", "--reason", "see it first")
	if err != nil || !strings.Contains(out, "canary → v2: shadow, 10% of traffic: see it first") {
		t.Fatalf("canary: %q %v", out, err)
	}
	out, _, _ = cli(t, url, "list")
	if !strings.Contains(out, "v2 shadow 10%") {
		t.Fatalf("list does not show the canary: %q", out)
	}
	for _, args := range [][]string{{"status"}, {"status", "calling-score"}} {
		if out, _, err := cli(t, url, args...); err != nil || !strings.Contains(out, "production v1  canary v2 shadow 10%  blend 1") {
			t.Fatalf("modelctl %s does not show the canary: %q %v", strings.Join(args, " "), out, err)
		}
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"canary", "calling-score", "2"}, "--traffic"},
		{[]string{"canary", "calling-score", "2", "--traffic", "10", "--mode", "blue"}, `"blue": want ab or shadow`},
		{[]string{"canary", "calling-score", "2", "--traffic", "NaN"}, "a percentage above 0 and at most 100"},
		{[]string{"canary", "calling-score", "1", "--traffic", "10"}, "v1"},
		{[]string{"blend", "calling-score", "1.5"}, "want a number from 0 to 1"},
		{[]string{"blend", "calling-score", "x"}, "want a number from 0 to 1"},
		{[]string{"blend", "calling-score", "NaN"}, "want a number from 0 to 1"},
		{[]string{"blend", "calling-score", "+Inf"}, "want a number from 0 to 1"},
		{[]string{"history", "--limit", "0"}, "--limit 0: want 1 to 10000"},
		{[]string{"history", "--last", "0"}, "--last 0: want 1 to 10000"},
		{[]string{"history", "--last", "2", "--limit", "3"}, "not both"},
		{[]string{"gc", "--grace", "-1h"}, "grace -1h0m0s: want 0 or more"},
	} {
		if _, _, err := cli(t, url, bad.args...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("modelctl %s: %v, want an error saying %q", strings.Join(bad.args, " "), err, bad.want)
		}
	}
	if out, _, err := cli(t, url, "canary", "calling-score", "--clear"); err != nil || !strings.Contains(out, "cleared") {
		t.Fatalf("clear: %q %v", out, err)
	}
	if out, _, err := cli(t, url, "blend", "calling-score", "0.5"); err != nil || !strings.Contains(out, "weight 0.5 (was 1) (revision") {
		t.Fatalf("blend: %q %v", out, err)
	}
	if out, _, err := cli(t, url, "blend", "calling-score", "0.75", "--reason", "ramp up"); err != nil || !strings.Contains(out, "weight 0.75 (was 0.5): ramp up") {
		t.Fatalf("blend --reason: %q %v", out, err)
	}
}

func TestPolicyAndStatusVerbs(t *testing.T) {
	url := mustControlPlane(t)
	dir := t.TempDir()
	if _, _, err := cli(t, url, "train", "--seed", "1", "--samples", "200", "--epochs", "1", "--quiet", "--out", dir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli(t, url, "push", filepath.Join(dir, "model.onnx"), "--model", "calling-score"); err != nil {
		t.Fatal(err)
	}
	out, _, err := cli(t, url, "policy", "calling-score")
	if err != nil || !strings.Contains(out, "max error rate") || !strings.Contains(out, "10m0s") {
		t.Fatalf("policy: %q %v", out, err)
	}
	if !strings.Contains(out, "corroborating nodes") {
		t.Fatalf("policy does not show corroborating nodes: %q", out)
	}
	out, _, err = cli(t, url, "policy", "calling-score", "--max-error-rate", "0.02", "--bake-time", "5m", "--corroborating-nodes", "3", "-o", "json")
	if err != nil || !strings.Contains(out, `"max_error_rate": 0.02`) || !strings.Contains(out, `"bake_time": "5m0s"`) || !strings.Contains(out, `"corroborating_nodes": 3`) {
		t.Fatalf("policy set: %q %v", out, err)
	}
	if _, _, err := cli(t, url, "policy", "calling-score", "--max-error-rate", "2"); err == nil || !strings.Contains(err.Error(), "max_error_rate") {
		t.Fatalf("an out-of-range policy: %v", err)
	}
	for _, bad := range [][]string{{"--max-error-rate", "NaN", "want a number"}, {"--max-p99-ms", "5ms", "want a number"}, {"--min-samples", "10x", "want a whole number"}, {"--failure-limit", "2.5", "want a whole number"}} {
		if _, _, err := cli(t, url, "policy", "calling-score", bad[0], bad[1]); err == nil || !strings.Contains(err.Error(), bad[2]) {
			t.Errorf("policy %s %s: %v, want %q", bad[0], bad[1], err, bad[2])
		}
	}
	out, _, err = cli(t, url, "status")
	if err != nil || !strings.Contains(out, "calling-score") || !strings.Contains(out, "no traffic reported") || !strings.Contains(out, "no scorer nodes") {
		t.Fatalf("status: %q %v", out, err)
	}

	// A scorer's first report of a dozen rows: too few to grade the drift.
	w := report.Window{Version: 1, Arm: "champion", Requests: 12, Rows: 12, Latency: make([]int64, len(report.LatencyBucketsMs)+1), Prediction: make([]int64, report.PredictionBins)}
	w.Latency[0] = 12
	// Its feature histograms have the bins of the card's reference.
	raw, err := os.ReadFile(filepath.Join(dir, "card.json"))
	if err != nil {
		t.Fatal(err)
	}
	var card artifact.Card
	if err := json.Unmarshal(raw, &card); err != nil || card.Reference == nil {
		t.Fatalf("the trained card: %v (reference %v)", err, card.Reference)
	}
	w.Features = make([][]int64, len(card.Features))
	for f, name := range card.Features {
		w.Features[f] = make([]int64, len(card.Reference.Features[name].Edges)+1)
		w.Features[f][len(w.Features[f])-1] = 12
	}
	// And a shadow run of 5 rows, which answers no requests.
	shadow := report.Window{Version: 1, Arm: "shadow", Rows: 5, Latency: make([]int64, len(report.LatencyBucketsMs)+1), Prediction: make([]int64, report.PredictionBins)}
	// And 3 requests the rules answered before any version was loaded.
	none := report.Window{Version: 0, Arm: "champion", Requests: 3, Rows: 3, Fallbacks: map[string]int64{"no_model": 3}, Latency: make([]int64, len(report.LatencyBucketsMs)+1), Prediction: make([]int64, report.PredictionBins)}
	none.Latency[0] = 3
	report, _ := json.Marshal(report.Report{Node: "n1", Ready: true, Models: []report.ModelReport{{Model: "calling-score", Windows: []report.Window{w, shadow, none},
		LoadError: "fetch v2: blob 3f…: not found"}}})
	// From node n1's own scorer token, for v1 once deployed.
	node, _, err := cli(t, url, "token", "create", "--name", "node-1", "--role", "scorer", "--node", "n1")
	if err != nil {
		t.Fatalf("token create --node: %v", err)
	}
	if _, _, err := cli(t, url, "promote", "calling-score", "1"); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/reports", bytes.NewReader(report))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(node))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("report: %v %s %v", resp.Status, b, err)
	}
	resp.Body.Close()
	out, _, err = cli(t, url, "status", "calling-score")
	if err != nil || !strings.Contains(out, "too few rows (12 of 220)") || strings.Contains(out, "red") {
		t.Fatalf("status after 12 rows: %q %v", out, err)
	}
	if !regexp.MustCompile(`rules, no model +champion +[0-9.]+ +0\.00% +100\.00% `).MatchString(out) || strings.Contains(out, "v0") {
		t.Fatalf("status names the rules' answers before any model as a version: %q", out)
	}
	if !regexp.MustCompile(`v1 +shadow +- +- +- +- +- +0 `).MatchString(out) {
		t.Fatalf("status shows rates or latency for a shadow run, which answers no requests: %q", out)
	}
	if !regexp.MustCompile(`\nn1 +true +- +[0-9]+s ago`).MatchString(out) {
		t.Fatalf("status shows a node serving nothing with an empty cell: %q", out)
	}
	if !strings.Contains(out, "n1 cannot serve calling-score's deployment: fetch v2: blob 3f…: not found") {
		t.Fatalf("status does not say why the node cannot serve its deployment: %q", out)
	}
}

func TestTokenVerbs(t *testing.T) {
	url := mustControlPlane(t)
	out, _, err := cli(t, url, "token", "create", "--name", "ci-bot", "--role", "viewer")
	secret := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(secret, "mo_") {
		t.Fatalf("token create: %q %v", out, err)
	}
	out, _, err = cli(t, url, "token", "list")
	if err != nil || !strings.Contains(out, "ci-bot") || !strings.Contains(out, "viewer") || strings.Contains(out, secret) {
		t.Fatalf("token list: %q %v", out, err)
	}
	id := strings.Split(secret, "_")[1]
	if out, _, err := cli(t, url, "token", "revoke", id); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("token revoke: %q %v", out, err)
	}
	// Without a token the server refuses, and says how to send one.
	var errb strings.Builder
	e := &env{stdout: &errb, stderr: &errb, getenv: func(k string) string {
		if k == "MODELCTL_SERVER" {
			return url
		}
		return ""
	}}
	if err := e.run(context.Background(), []string{"list"}); err == nil || !strings.Contains(err.Error(), "MODELCTL_TOKEN") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("list without a token: %v", err)
	}
}

func TestBackupWhileRunning(t *testing.T) {
	url := mustControlPlane(t)
	dir := t.TempDir()
	if _, _, err := cli(t, url, "train", "--seed", "1", "--samples", "200", "--epochs", "1", "--quiet", "--out", dir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli(t, url, "push", filepath.Join(dir, "model.onnx"), "--model", "calling-score"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "backup.db")
	if o, _, err := cli(t, url, "backup", "--out", out); err != nil || !strings.Contains(o, "consistency checked") {
		t.Fatalf("backup: %q %v", o, err)
	}
	// The copy opens as a registry with the model in it.
	r := registry.New(out, nil, nil)
	if err := r.Open(); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if m, err := r.Model(context.Background(), "calling-score"); err != nil || m.Latest != 1 {
		t.Fatalf("backup holds %+v %v", m, err)
	}

	// An earlier backup is kept unless --force says to replace it.
	keep := filepath.Join(filepath.Dir(out), "earlier.db")
	if err := os.WriteFile(keep, []byte("an earlier backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli(t, url, "backup", "--out", keep); err == nil || !strings.Contains(err.Error(), "exists") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("backup over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(keep); string(b) != "an earlier backup" {
		t.Fatalf("the earlier backup was changed: %q", b)
	}
	if o, _, err := cli(t, url, "backup", "--out", keep, "--force"); err != nil || !strings.Contains(o, "consistency checked") {
		t.Fatalf("backup --force: %q %v", o, err)
	}
	if err := checkBoltFile(keep); err != nil {
		t.Fatalf("backup --force left %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "*.tmp")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// placeBackup never replaces a file that appeared while the backup was taken.
func TestPlaceBackupKeepsAFileMadeMeanwhile(t *testing.T) {
	dir := t.TempDir()
	tmp, out := filepath.Join(dir, "b.tmp"), filepath.Join(dir, "b.db")
	for _, f := range []string{tmp, out} {
		if err := os.WriteFile(f, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := placeBackup(tmp, out, false); err == nil || !strings.Contains(err.Error(), "appeared") {
		t.Fatalf("placeBackup over a new file: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != out {
		t.Fatalf("the file made meanwhile was replaced: %q", b)
	}
	if err := placeBackup(tmp, out, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != tmp {
		t.Fatalf("--force did not replace it: %q", b)
	}
}

// `token new` makes a secret a control plane takes as MODELOPS_ADMIN_TOKEN,
// without asking one: there is none yet when it is needed.
func TestTokenNewNeedsNoControlPlane(t *testing.T) {
	var secrets []string
	for range 2 {
		var out, errb strings.Builder
		e := &env{stdout: &out, stderr: &errb, getenv: func(k string) string {
			if k == "MODELCTL_SERVER" {
				return "http://127.0.0.1:1" // nothing listens here
			}
			return ""
		}}
		if err := e.run(context.Background(), []string{"token", "new"}); err != nil {
			t.Fatalf("token new: %v (%s)", err, errb.String())
		}
		secrets = append(secrets, strings.TrimSuffix(out.String(), "\n"))
	}
	if secrets[0] == secrets[1] {
		t.Fatalf("two calls made the same secret %q", secrets[0])
	}
	reg, _ := testutil.MustRegistry(t)
	if _, err := reg.AddToken("bootstrap-admin", registry.RoleAdmin, secrets[0]); err != nil {
		t.Fatalf("the registry refuses %q: %v", secrets[0], err)
	}
}

// A bad setting at start is named as the setting it is, not as an "invalid
// request": there is none yet.
func TestServeSaysWhatIsWrongWithItsSettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "bogus://x"}, `blob store URL "bogus://x": unknown scheme "bogus" (want file:///DIR or s3://BUCKET/PREFIX`},
		{[]string{"--store", "s3://"}, "s3 URL needs a bucket"},
		{[]string{"--eval-interval", "0s"}, "--eval-interval 0s: want more than 0"},
		{[]string{"--max-conns-per-addr", "-1"}, "--max-conns-per-addr -1: want 0 (no bound) or more"},
		{[]string{"--max-watch-streams-per-token", "-5"}, "--max-watch-streams-per-token -5: want 1 or more"},
		{[]string{"--max-nodes", "-1"}, "--max-nodes -1: want 1 or more"},
	} {
		args := append([]string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0"}, tc.args...)
		_, _, err := cli(t, "http://127.0.0.1:1", args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "invalid request") {
			t.Errorf("modelctl %s: %v, want it to say %q", strings.Join(args, " "), err, tc.want)
		}
	}
}

// serve reads its secrets from the environment only: its help says which,
// on stdout, however it is asked for.
func TestServeHelpNamesTheEnvironment(t *testing.T) {
	for _, args := range [][]string{{"serve", "-h"}, {"serve", "--help"}, {"help", "serve"}} {
		out, _, err := cli(t, "http://127.0.0.1:1", args...)
		if err != nil {
			t.Fatalf("modelctl %s: %v", strings.Join(args, " "), err)
		}
		for _, want := range []string{"MODELOPS_ADMIN_TOKEN", "AWS_ACCESS_KEY_ID", "MODELOPS_STORE", "-store string", "MODELOPS_META", "-meta string", "-insecure-no-auth"} {
			if !strings.Contains(out, want) {
				t.Errorf("modelctl %s does not mention %s:\n%s", strings.Join(args, " "), want, out)
			}
		}
	}
}

// A push without a card is allowed, and says what the version goes without.
func TestPushWithoutACardSaysSo(t *testing.T) {
	url := mustControlPlane(t)
	dir := t.TempDir()
	data, err := os.ReadFile(testutil.MustModel(t, 1).Path)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "m.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := cli(t, url, "push", path, "--model", "calling-score")
	if err != nil || !strings.Contains(out, "pushed calling-score v1") || !strings.Contains(errOut, "no card") || !strings.Contains(errOut, "golden inputs") {
		t.Fatalf("push without a card: %q %q %v", out, errOut, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "card.json"), testutil.MustModel(t, 2).Card, 0o644); err != nil {
		t.Fatal(err)
	}
	path2 := filepath.Join(dir, "m2.onnx")
	data2, _ := os.ReadFile(testutil.MustModel(t, 2).Path)
	os.WriteFile(path2, data2, 0o644)
	if _, errOut, err = cli(t, url, "push", path2, "--model", "calling-score"); err != nil || strings.Contains(errOut, "no card") || !strings.Contains(errOut, "using card") {
		t.Fatalf("push with card.json beside: %q %v", errOut, err)
	}
}

// push --reason is kept: show prints it with who pushed, history lists it.
func TestPushReasonShowsOnShowAndHistory(t *testing.T) {
	url := mustControlPlane(t)
	m := testutil.MustModel(t, 1)
	if out, errOut, err := cli(t, url, "push", m.Path, "--model", "calling-score", "--reason", "retrained on November's traffic"); err != nil || !strings.Contains(out, "pushed calling-score v1") {
		t.Fatalf("push --reason: %q %q %v", out, errOut, err)
	}
	out, _, err := cli(t, url, "show", "calling-score", "1")
	if err != nil || !regexp.MustCompile(`(?m)^reason +retrained on November's traffic$`).MatchString(out) || !regexp.MustCompile(`(?m)^by +\S+`).MatchString(out) {
		t.Fatalf("show after push --reason:\n%s\n%v", out, err)
	}
	out, _, err = cli(t, url, "history", "calling-score")
	if err != nil || !regexp.MustCompile(`pushed .*v1 .*retrained on November's traffic`).MatchString(out) {
		t.Fatalf("history after push --reason:\n%s\n%v", out, err)
	}
}

func TestBlobsCountsInWords(t *testing.T) {
	for n, want := range map[int]string{0: "0 blobs", 1: "1 blob", 2: "2 blobs"} {
		if got := blobs(n); got != want {
			t.Errorf("blobs(%d) = %q, want %q", n, got, want)
		}
	}
}

// A token read from the environment with a line break or spaces around it (an
// env file, a paste) works: a token never holds either.
func TestTokenFromTheEnvironmentIsTrimmed(t *testing.T) {
	url := mustControlPlane(t)
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: io.Discard, getenv: func(k string) string {
		return map[string]string{"MODELCTL_SERVER": url, "MODELCTL_TOKEN": " " + testToken + "\n"}[k]
	}}
	if err := e.run(context.Background(), []string{"token", "list"}); err != nil || !strings.Contains(out.String(), "bootstrap-admin") {
		t.Fatalf("token list with the token in spaces: %q %v", out.String(), err)
	}
	// And a control plane started with such a token takes it as given.
	cfg := app.DefaultControlPlaneConfig()
	cfg.DataDir, cfg.Listen = t.TempDir(), "127.0.0.1:0"
	serve := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string {
		return map[string]string{"MODELOPS_ADMIN_TOKEN": testToken + "\n"}[k]
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve.run(ctx, []string{"serve", "--data", cfg.DataDir, "--listen", "127.0.0.1:0"}) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve with MODELOPS_ADMIN_TOKEN ending in a line break: %v", err)
	}
}
