package scorerapi_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/valyala/fasthttp"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/scorerapi"
	"github.com/modelops/modelops/internal/wire"
)

// These benchmarks call the handlers directly (no network), so they show what the
// scorer adds per request over a handler that decodes the same JSON and answers a
// constant: `go test -run '^$' -bench Handler ./internal/scorerapi`.

var benchBody = []byte(`{"features":[` + strings.TrimSuffix(strings.Repeat("0.4321,", 39), ",") + `]}`)

// serveFast runs h on one request of body to path, b.N times, and returns the
// last answer.
func serveFast(b *testing.B, h fasthttp.RequestHandler, path string, body []byte, header map[string]string) []byte {
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod(http.MethodPost)
		ctx.Request.SetRequestURI(path)
		for k, v := range header {
			ctx.Request.Header.Set(k, v)
		}
		ctx.Request.SetBody(body)
		h(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	return append([]byte(nil), ctx.Response.Body()...)
}

func BenchmarkHandlerNullModel(b *testing.B) {
	score := float32(0.5)
	serveFast(b, func(ctx *fasthttp.RequestCtx) {
		var req wire.ScoreRequest
		if err := json.Unmarshal(ctx.Request.Body(), &req); err != nil || len(req.Features) != 39 {
			ctx.SetStatusCode(http.StatusBadRequest)
			return
		}
		out, _ := json.Marshal(wire.ScoreResponse{Model: "null", Score: &score, Source: scorerapi.SourceModel, Version: 1, Arm: scorerapi.ArmProduction})
		ctx.SetContentType("application/json")
		ctx.SetBody(out)
	}, "/v1/score", benchBody, nil)
}

func BenchmarkHandlerScorer(b *testing.B) {
	sc := shippedScorer(b)
	answer := serveFast(b, sc.Handler().Serve, "/v1/score", benchBody, nil)
	var r wire.ScoreResponse
	json.Unmarshal(answer, &r)
	if r.Source != scorerapi.SourceModel {
		b.Fatalf("benchmark answered from %s", r.Source)
	}
}

// shippedScorer serves the shipped calling-score model as a scorer node does:
// monitoring on, the card's reference binning every row, answers remembered for
// feedback.
func shippedScorer(b *testing.B) *scorerapi.Scorer {
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
	served := scorerapi.NewServed("calling-score", fallback.CallingScore{})
	served.Production.Swap(loader.NewLoaded(s, 1, "bench", card))
	b.Cleanup(served.Production.Close)
	sc := scorerapi.NewScorer(discard, served)
	sc.Recorder = report.NewRecorder()
	sc.Recorder.SetReference(1, card)
	sc.Join = report.NewJoin(sc.Recorder, 100000)
	return sc
}

// BenchmarkFastOIPBinary256 serves a 256-row OIP v2 binary request through the
// scorer's fasthttp handler, in process: what a 256-row request costs the
// scorer's CPU beyond the network. Beside it, in the same run, the baselines:
// "null" only reads the body and answers the scorer's bytes, "no-model" is the
// scorer with constant rules (everything but ONNX Runtime), "raw" is the bare
// session run: `go test -run '^$' -bench FastOIP ./internal/scorerapi`.
func BenchmarkFastOIPBinary256(b *testing.B) {
	data := make([]byte, 0, 256*39*4)
	for i := range 256 * 39 {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(i%97)/97))
	}
	header := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[256,39],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"outputs":[{"name":"output","parameters":{"binary_data":true}}]}`, len(data))
	body := append([]byte(header), data...)
	serve := func(b *testing.B, h fasthttp.RequestHandler) []byte {
		return serveFast(b, h, "/v2/models/calling-score/infer", body, map[string]string{scorerapi.HeaderInferenceLength: fmt.Sprint(len(header))})
	}
	withModel := shippedScorer(b)
	var answer []byte
	var scorerNs float64
	b.Run("scorer", func(b *testing.B) {
		answer = serve(b, withModel.Handler().Serve)
		scorerNs = perOp(b)
	})
	b.Run("no-model", func(b *testing.B) {
		sc := newScorer(scorerapi.NewServed("calling-score", constantRules{}))
		sc.Recorder = report.NewRecorder()
		serve(b, sc.Handler().Serve)
	})
	b.Run("null", func(b *testing.B) {
		serve(b, func(ctx *fasthttp.RequestCtx) {
			if len(ctx.Request.Body()) != len(body) {
				ctx.SetStatusCode(http.StatusBadRequest)
				return
			}
			ctx.Response.Header.Set(scorerapi.HeaderInferenceLength, "200")
			ctx.SetBody(answer)
		})
	})
	b.Run("raw", func(b *testing.B) {
		m, _ := withModel.Model("calling-score")
		l := m.Production.Acquire()
		defer l.Release()
		flat := make([]float32, 256*39)
		for i := range flat {
			flat[i] = float32(i%97) / 97
		}
		for b.Loop() {
			if _, err := l.Run(flat, 256); err != nil {
				b.Fatal(err)
			}
		}
		if scorerNs > 0 {
			b.ReportMetric(scorerNs/perOp(b), "scorer/raw")
		}
	})
}

// perOp is the time an iteration of b took, in nanoseconds.
func perOp(b *testing.B) float64 { return float64(b.Elapsed().Nanoseconds()) / float64(max(1, b.N)) }

// constantRules answer every row with the same score.
type constantRules struct{}

func (constantRules) Features() int           { return 39 }
func (constantRules) Score([]float32) float32 { return 0.5 }

// BenchmarkDecodeScoreRequest256 decodes a 256-row /v1/score body (9,984
// numbers) with the scorer's decoder and, as the baseline in the same run, with
// encoding/json: `go test -run '^$' -bench DecodeScoreRequest ./internal/scorerapi`.
func BenchmarkDecodeScoreRequest256(b *testing.B) {
	rows := make([][]float32, 256)
	for i := range rows {
		rows[i] = make([]float32, 39)
		for j := range rows[i] {
			rows[i][j] = float32(i)/512 + float32(j)/100
		}
	}
	body, err := json.Marshal(map[string]any{"rows": rows})
	if err != nil {
		b.Fatal(err)
	}
	var scorerNs float64
	b.Run("scorer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r wire.ScoreRequest
			if err := scorerapi.DecodeScoreRequest(body, &r); err != nil || len(r.Rows) != 256 {
				b.Fatal(err)
			}
		}
		scorerNs = perOp(b)
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r wire.ScoreRequest
			if err := json.Unmarshal(body, &r); err != nil || len(r.Rows) != 256 {
				b.Fatal(err)
			}
		}
		if scorerNs > 0 {
			b.ReportMetric(perOp(b)/scorerNs, "×scorer")
		}
	})
}

// BenchmarkEncodeScoreResponse writes /v1/score answers of one and of 256 rows
// with the scorer's writer and, as the baseline in the same run, with
// encoding/json's Encoder, which it replaces: `go test -run '^$' -bench
// EncodeScoreResponse ./internal/scorerapi`.
func BenchmarkEncodeScoreResponse(b *testing.B) {
	for _, rows := range []int{1, 256} {
		resp := wire.ScoreResponse{Model: "calling-score", Source: scorerapi.SourceModel, Version: 3, Arm: scorerapi.ArmProduction, RequestID: "d7ddc33e4e000000"}
		scores := make([]float32, rows)
		for i := range scores {
			scores[i] = 1 / (1 + float32(math.Exp(-float64(i%97)/13)))
		}
		if rows == 1 {
			resp.Score = &scores[0]
		} else {
			resp.Scores = scores
		}
		var scorerNs float64
		b.Run(fmt.Sprintf("scorer/%d", rows), func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 8<<10)
			for b.Loop() {
				var err error
				if buf, err = scorerapi.AppendJSON(buf[:0], resp); err != nil {
					b.Fatal(err)
				}
			}
			scorerNs = perOp(b)
		})
		b.Run(fmt.Sprintf("encoding-json/%d", rows), func(b *testing.B) {
			b.ReportAllocs()
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if err := json.NewEncoder(&buf).Encode(resp); err != nil {
					b.Fatal(err)
				}
			}
			if scorerNs > 0 {
				b.ReportMetric(perOp(b)/scorerNs, "×scorer")
			}
		})
	}
}
