package app

import (
	"context"
	"io"
	"log/slog"
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
