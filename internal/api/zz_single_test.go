package api_test

import (
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/loader"
)

func BenchmarkZZSingle(b *testing.B) {
	serve := func(b *testing.B, h fasthttp.RequestHandler) {
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			var ctx fasthttp.RequestCtx
			for pb.Next() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.Header.SetMethod(http.MethodPost)
				ctx.Request.SetRequestURI("/v1/score")
				ctx.Request.SetBody(benchBody)
				h(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		})
	}
	score := float32(0.5)
	b.Run("null", func(b *testing.B) {
		serve(b, func(ctx *fasthttp.RequestCtx) {
			var req api.ScoreRequest
			if err := api.DecodeScoreRequest(ctx.PostBody(), &req); err != nil || len(req.Features) != 39 {
				ctx.SetStatusCode(400)
				return
			}
			if os.Getenv("XOLD") != "" {
				json.NewEncoder(ctx).Encode(api.ScoreResponse{Model: "null", Score: &score, Source: api.SourceModel, Version: 1, Arm: api.ArmChampion})
				return
			}
			var buf [256]byte
			b, _ := api.AppendJSON(buf[:0], api.ScoreResponse{Model: "null", Score: &score, Source: api.SourceModel, Version: 1, Arm: api.ArmChampion})
			ctx.SetBody(b)
		})
	})
	sc := shippedScorer(b)
	sc.Batcher = loader.NewBatcher(64, 500*time.Microsecond)
	b.Run("scorer", func(b *testing.B) {
		serve(b, sc.Fast().Serve)
		runs, rows := sc.Batcher.Stats()
		b.ReportMetric(float64(rows)/float64(runs), "rows/run")
	})
}
