package app

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/monitor/report"
)

// A setting out of range stops the start with an error naming its flag, before
// anything is made: none is quietly replaced by a default.
func TestOutOfRangeSettingsAreRefusedByTheirFlag(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	scorer := []struct {
		flag string
		set  func(*ScorerConfig)
	}{
		{"--model", func(c *ScorerConfig) { c.Models = []string{"Calling/Score"} }},
		{"--model", func(c *ScorerConfig) { c.Models = nil }},
		{"--model", func(c *ScorerConfig) { c.Models = []string{"a", "*"} }},
		{"--control-plane", func(c *ScorerConfig) { c.ControlPlane = "localhost:8080" }},
		{"--intra-op-threads", func(c *ScorerConfig) { c.IntraOpThreads = 0 }},
		{"--intra-op-threads", func(c *ScorerConfig) { c.IntraOpThreads = 1000 }},
		{"--batch-max-rows", func(c *ScorerConfig) { c.BatchMaxRows = -1 }},
		{"--batch-max-wait", func(c *ScorerConfig) { c.BatchMaxWait = -time.Millisecond }},
		{"--batch-max-wait", func(c *ScorerConfig) { c.BatchMaxWait = time.Hour }},
		{"--report-interval", func(c *ScorerConfig) { c.ReportInterval = 0 }},
		{"--load-timeout", func(c *ScorerConfig) { c.LoadTimeout = 0 }},
		{"--feedback-capacity", func(c *ScorerConfig) { c.FeedbackCapacity = 0 }},
		{"--feedback-capacity", func(c *ScorerConfig) { c.FeedbackCapacity = report.MaxJoinCapacity + 1 }},
		{"--tls-key", func(c *ScorerConfig) { c.TLSCert = "cert.pem" }},
		{"--api-key", func(c *ScorerConfig) { c.APIKeys = []string{"k1", ""} }},
		{"--api-key", func(c *ScorerConfig) { c.APIKeys = []string{" k1"} }},
	}
	for _, tc := range scorer {
		cfg := DefaultScorerConfig()
		cfg.GRPCListen = "127.0.0.1:0" // the default port would be shared by tests running at once
		cfg.Listen, cfg.CacheDir = "127.0.0.1:0", filepath.Join(t.TempDir(), "cache")
		tc.set(&cfg)
		err := NewScorer(cfg, log).Open(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("scorer %+v: Open = %v, want an error naming %s", cfg, err, tc.flag)
		}
		if _, err := os.Stat(cfg.CacheDir); err == nil {
			t.Errorf("scorer refused for %s made its cache directory", tc.flag)
		}
	}
	controlPlane := []struct {
		flag string
		set  func(*ControlPlaneConfig)
	}{
		{"--max-artifact-bytes", func(c *ControlPlaneConfig) { c.MaxArtifactBytes = -5 }},
		{"--monitor-window", func(c *ControlPlaneConfig) { c.MonitorWindow = 0 }},
		{"--eval-interval", func(c *ControlPlaneConfig) { c.EvalInterval = -time.Second }},
		{"--eval-interval", func(c *ControlPlaneConfig) { c.EvalInterval = time.Hour }},
		{"--tls-cert", func(c *ControlPlaneConfig) { c.TLSKey = "key.pem" }},
		{"--verify-cpu", func(c *ControlPlaneConfig) { c.VerifyCPUTime = 0 }},
		{"--verify-memory", func(c *ControlPlaneConfig) { c.VerifyMemory = 1 << 20 }},
		{"--verify-timeout", func(c *ControlPlaneConfig) { c.VerifyTimeout = -time.Second }},
		{"--verify-concurrency", func(c *ControlPlaneConfig) { c.VerifyConcurrency = 0 }},
	}
	for _, tc := range controlPlane {
		cfg := DefaultControlPlaneConfig()
		cfg.Listen, cfg.DataDir = "127.0.0.1:0", filepath.Join(t.TempDir(), "data")
		tc.set(&cfg)
		err := NewControlPlane(cfg, log).Open(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("control plane %+v: Open = %v, want an error naming %s", cfg, err, tc.flag)
		}
		if _, err := os.Stat(cfg.DataDir); err == nil {
			t.Errorf("control plane refused for %s made its data directory", tc.flag)
		}
	}
}
