package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/testutil"
)

func TestRolloutVerbs(t *testing.T) {
	url := mustControlPlane(t)
	dir := t.TempDir()
	for seed := uint64(1); seed <= 2; seed++ {
		m := testutil.MustModel(t, seed)
		card := filepath.Join(dir, "card.json")
		if err := os.WriteFile(card, m.Card, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cli(t, url, "push", m.Path, "--model", "calling-score", "--card", card); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := cli(t, url, "rollout", "calling-score", "2"); err == nil || !strings.Contains(err.Error(), "no production version") {
		t.Fatalf("a rollout without production: %v", err)
	}
	if _, _, err := cli(t, url, "promote", "calling-score", "1"); err != nil {
		t.Fatal(err)
	}
	out, _, err := cli(t, url, "rollout", "policy", "calling-score")
	if err != nil || !strings.Contains(out, "5%, 25%, 50%, 100%") || !strings.Contains(out, "loss margin") {
		t.Fatalf("rollout policy: %q %v", out, err)
	}
	out, _, err = cli(t, url, "rollout", "policy", "calling-score", "--steps", "10,60", "--loss-margin", "0.2", "--require-outcomes", "-o", "json")
	if err != nil || !strings.Contains(out, `"loss_margin": 0.2`) || !strings.Contains(out, `"require_outcomes": true`) {
		t.Fatalf("rollout policy set: %q %v", out, err)
	}
	for _, bad := range [][]string{{"--steps", "50,10", "increasing"}, {"--steps", "0", "percentage"}, {"--alpha", "0.9", "alpha"}, {"--interval", "-1s", "positive duration"}} {
		if _, _, err := cli(t, url, "rollout", "policy", "calling-score", bad[0], bad[1]); err == nil || !strings.Contains(err.Error(), bad[2]) {
			t.Errorf("rollout policy %s %s: %v, want %q", bad[0], bad[1], err, bad[2])
		}
	}
	out, _, err = cli(t, url, "rollout", "calling-score", "2", "--interval", "1h", "--timeout", "2h", "--shadow", "5m")
	if err != nil || !strings.Contains(out, "rollout of v2 started") || !strings.Contains(out, "shadow for 5m0s, then steps 10%, 60%") {
		t.Fatalf("rollout: %q %v", out, err)
	}
	if _, _, err := cli(t, url, "rollout", "calling-score", "2"); err == nil || !strings.Contains(err.Error(), "abort it first") {
		t.Fatalf("a second rollout: %v", err)
	}
	out, _, err = cli(t, url, "rollout", "status", "calling-score")
	if err != nil || !strings.Contains(out, "[shadow 5m0s] → 10% → 60%") || !strings.Contains(out, "running") {
		t.Fatalf("rollout status: %q %v", out, err)
	}
	if _, _, err := cli(t, url, "rollout", "pause", "calling-score"); err != nil {
		t.Fatal(err)
	}
	out, _, err = cli(t, url, "rollout", "status", "calling-score", "-o", "json")
	var st monitor.RolloutStatus
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Rollout == nil || st.Rollout.State != "paused" || st.Rollout.Step != -1 {
		t.Fatalf("rollout status -o json: %q %v", out, err)
	}
	out, _, err = cli(t, url, "rollout", "status", "calling-score", "-o", "jsonpath={.rollout.state}")
	if err != nil || strings.TrimSpace(out) != "paused" {
		t.Fatalf("rollout status jsonpath: %q %v", out, err)
	}
	if out, _, err = cli(t, url, "rollout", "pause", "calling-score"); err != nil || !strings.Contains(out, "unchanged") {
		t.Fatalf("a second pause: %q %v", out, err)
	}
	if _, _, err := cli(t, url, "rollout", "resume", "calling-score"); err != nil {
		t.Fatal(err)
	}
	out, _, err = cli(t, url, "rollout", "abort", "calling-score", "--reason", "testing")
	if err != nil || !strings.Contains(out, "rollout aborted") {
		t.Fatalf("abort: %q %v", out, err)
	}
	if _, _, err := cli(t, url, "rollout", "abort", "calling-score"); err == nil || !strings.Contains(err.Error(), "no rollout in progress") {
		t.Fatalf("a second abort: %v", err)
	}
	out, _, err = cli(t, url, "history", "calling-score")
	if err != nil || !strings.Contains(out, "rollout_started") || !strings.Contains(out, "rollout_paused") || !strings.Contains(out, "rollout_aborted") {
		t.Fatalf("history: %q %v", out, err)
	}
}
