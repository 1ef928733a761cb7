package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The null handlers on echo and on fasthttp are separate processes that answer
// the same request with the same body, and refuse a row of the wrong width
// alike; the load generator counts their answers.
func TestNullHandlersAnswerAlike(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	single, _ := jsonBodies()
	var answers [][]byte
	for _, kind := range []string{"null-echo", "null-fasthttp"} {
		p, err := startServer(t.TempDir(), kind, exe, []string{"-child", kind, "ADDR"}, nil, "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.stop)
		post := func(body []byte) (int, []byte) {
			t.Helper()
			resp, err := http.Post(p.url+"/v1/score", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, b
		}
		status, answer := post(single)
		if status != http.StatusOK {
			t.Fatalf("%s: %d %s", kind, status, answer)
		}
		answers = append(answers, answer)
		if status, answer := post([]byte(`{"features":[1,2,3]}`)); status != http.StatusBadRequest {
			t.Errorf("%s: three features answered %d %s, want 400", kind, status, answer)
		}
		res, err := load(context.Background(), loadSpec{URL: p.url + "/v1/score", Body: single, Conns: 2, Duration: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests == 0 || res.Failed != 0 {
			t.Errorf("%s under load: %d requests, %d failed (%s)", kind, res.Requests, res.Failed, res.FirstError)
		}
		m, err := startMeter(p.pid())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.stop(1, 1); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(answers[0], answers[1]) {
		t.Errorf("echo answered %s, fasthttp %s", answers[0], answers[1])
	}
}

// A raw-loop child runs the shipped model with real ONNX Runtime for a window
// and is charged the CPU it spent for the runs it made.
func TestRawLoopWindow(t *testing.T) {
	lib := envOr("ONNXRUNTIME_LIB", filepath.Join("..", "..", ".cache", "onnxruntime", "libonnxruntime.so.1"))
	model := filepath.Join("..", "..", "models", "calling_score", "model.onnx")
	for _, batch := range []int{1, 256} {
		r, err := startRawLoop(t.TempDir(), lib, model, batch)
		if err != nil {
			t.Fatal(err)
		}
		c, err := r.window(500 * time.Millisecond)
		r.stop()
		if err != nil {
			t.Fatal(err)
		}
		if c.requests <= 0 || c.rows != c.requests*batch || c.cpu <= 0 {
			t.Errorf("batch %d: %d runs, %d rows, %s of CPU: want runs, %d rows a run, CPU spent", batch, c.requests, c.rows, c.cpu, batch)
		}
	}
}
