package app

import (
	"context"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/monitor"
)

func TestScorerRefusesAnOversizedFeedbackJoin(t *testing.T) {
	cfg := DefaultScorerConfig()
	cfg.FeedbackCapacity = monitor.MaxJoinCapacity + 1
	err := NewScorer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))).Open(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--feedback-capacity") {
		t.Fatalf("Open with a feedback capacity over %d: %v", monitor.MaxJoinCapacity, err)
	}
}

func TestTuneGCLeavesAnExplicitGOGCAlone(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	t.Setenv("GOGC", "50")
	if TuneGC(ScorerGCPercent) {
		t.Fatal("TuneGC overrode GOGC=50")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("collector target %d after TuneGC with GOGC set, want it unchanged (100)", got)
	}
	t.Setenv("GOGC", "")
	if !TuneGC(ScorerGCPercent) {
		t.Fatal("TuneGC did nothing without GOGC")
	}
	if got := debug.SetGCPercent(100); got != ScorerGCPercent {
		t.Fatalf("collector target %d, want %d", got, ScorerGCPercent)
	}
}
