package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/monitor"
)

// These benchmarks call the handlers directly (no network), so they show what the
// scorer adds per request over a handler that decodes the same JSON and answers a
// constant: `go test -run '^$' -bench Handler ./internal/api`.

var benchBody = []byte(`{"features":[` + strings.TrimSuffix(strings.Repeat("0.4321,", 39), ",") + `]}`)

func serveBench(b *testing.B, h http.Handler) {
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/score", bytes.NewReader(benchBody))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

func BenchmarkHandlerNullModel(b *testing.B) {
	e := echo.New()
	score := float32(0.5)
	e.POST("/v1/score", func(c echo.Context) error {
		body, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		var req api.ScoreRequest
		if err := api.DecodeScoreRequest(body, &req); err != nil || len(req.Features) != 39 {
			return c.JSON(http.StatusBadRequest, nil)
		}
		return c.JSON(http.StatusOK, api.ScoreResponse{Model: "null", Score: &score, Source: api.SourceModel, Version: 1, Arm: api.ArmChampion})
	})
	serveBench(b, e)
}

func BenchmarkHandlerScorer(b *testing.B) {
	raw, err := os.ReadFile("../../models/calling_score/card.json")
	if err != nil {
		b.Fatal(err)
	}
	card, err := artifact.ParseCard(raw)
	if err != nil {
		b.Fatal(err)
	}
	s, err := loader.Open("../../models/calling_score/model.onnx", loader.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	served := api.NewServed("calling-score", fallback.CallingScore{})
	served.Slot.Swap(loader.NewLoaded(s, 1, "bench", card))
	defer served.Slot.Close()
	sc := api.NewScorer(discard, served)
	sc.Recorder = monitor.NewRecorder()
	sc.Recorder.SetReference(1, card)
	sc.Join = monitor.NewJoin(sc.Recorder, 100000)
	serveBench(b, sc.Handler())
	var r api.ScoreResponse
	rec := httptest.NewRecorder()
	sc.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/score", bytes.NewReader(benchBody)))
	json.Unmarshal(rec.Body.Bytes(), &r)
	if r.Source != api.SourceModel {
		b.Fatalf("benchmark answered from %s", r.Source)
	}
}
