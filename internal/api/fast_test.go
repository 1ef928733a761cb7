package api_test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/wire"
)

// MustServeFast serves s on fasthttp on 127.0.0.1:0 until the test ends.
func MustServeFast(tb testing.TB, s *api.Scorer) string {
	tb.Helper()
	srv := api.NewFastServer("127.0.0.1:0", s.Fast(), discard)
	if err := srv.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close(context.Background()) })
	return srv.URL()
}

// The scorer on fasthttp must answer every request exactly as the echo routes do:
// the same status, headers that matter and bytes, for good requests and bad, on
// the routes it serves itself and on those it hands to echo.
func TestFastServerAnswersLikeEcho(t *testing.T) {
	s := newScorer(mustServed(t))
	s.APIKeys = []string{"sekret"}
	s.MaxBodyBytes = 64 << 10
	echoURL, fastURL := MustServe(t, s.Handler()), MustServeFast(t, s)

	row := "[" + nums(39, "0.25") + "]"
	binary256 := func(tamper func([]byte)) (string, []byte) {
		data := make([]byte, 0, 256*39*4)
		for i := 0; i < 256*39; i++ {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(i%97)/97))
		}
		if tamper != nil {
			tamper(data)
		}
		header := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[256,39],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"outputs":[{"name":"output","parameters":{"binary_data":true}}]}`, len(data))
		return fmt.Sprint(len(header)), append([]byte(header), data...)
	}
	hl, bin := binary256(nil)
	hlNaN, binNaN := binary256(func(d []byte) { binary.LittleEndian.PutUint32(d[4*1000:], 0x7fc00000) })
	infer := "/v2/models/calling-score/infer"
	squeeze := func(b []byte, w io.WriteCloser, out *bytes.Buffer) []byte {
		w.Write(b)
		w.Close()
		return out.Bytes()
	}
	gz := func(b []byte) []byte { var out bytes.Buffer; return squeeze(b, gzip.NewWriter(&out), &out) }
	zl := func(b []byte) []byte { var out bytes.Buffer; return squeeze(b, zlib.NewWriter(&out), &out) }
	bomb := gz(bytes.Repeat([]byte(" "), 1<<20)) // 1 KB that inflates to 1 MiB, past the 64 KiB limit
	tests := []struct {
		name, method, path string
		headers            map[string]string
		body               []byte
		wantStatus         int
		chunked            bool // send the body without a length
	}{
		{"one row", "POST", "/v1/score", nil, []byte(`{"features":` + row + `}`), 200, false},
		{"three rows", "POST", "/v1/score", nil, []byte(`{"rows":[` + row + "," + row + "," + row + `]}`), 200, false},
		{"no key", "POST", "/v1/score", map[string]string{"X-API-Key": ""}, []byte(`{"features":` + row + `}`), 401, false},
		{"bearer key", "POST", "/v1/score", map[string]string{"X-API-Key": "", "Authorization": "Bearer sekret"}, []byte(`{"features":` + row + `}`), 200, false},
		{"malformed JSON", "POST", "/v1/score", nil, []byte(`{"features":[1,2`), 400, false},
		{"short row", "POST", "/v1/score", nil, []byte(`{"features":[1,2,3]}`), 400, false},
		{"null feature", "POST", "/v1/score", nil, []byte(`{"features":[null,` + nums(38, "0.1") + `]}`), 400, false},
		{"outside float32", "POST", "/v1/score", nil, []byte(`{"features":[1e39,` + nums(38, "0.1") + `]}`), 400, false},
		{"unknown model", "POST", "/v1/score", nil, []byte(`{"model":"nope","features":` + row + `}`), 404, false},
		{"bad budget", "POST", "/v1/score", nil, []byte(`{"budget_ms":-1,"features":` + row + `}`), 400, false},
		{"oversized body", "POST", "/v1/score", nil, []byte(`{"rows":[` + strings.Repeat(row+",", 2000) + row + `]}`), 413, false},
		{"oversized body, chunked", "POST", "/v1/score", nil, []byte(`{"rows":[` + strings.Repeat(row+",", 2000) + row + `]}`), 413, true},
		{"wrong method", "GET", "/v1/score", nil, nil, 405, false},
		{"unknown route", "GET", "/v1/nothing", nil, nil, 404, false},
		{"feedback without a join", "POST", "/v1/feedback", nil, []byte(`{"request_id":"x","outcome":1}`), 404, false},
		{"readiness", "GET", "/readyz", nil, nil, 200, false},
		{"readiness, HEAD", "HEAD", "/readyz", nil, nil, 200, false},
		{"OIP ready, HEAD", "HEAD", "/v2/health/ready", nil, nil, 200, false},
		{"HEAD where only POST goes", "HEAD", "/v1/score", nil, nil, 405, false},
		{"OIP ready", "GET", "/v2/health/ready", nil, nil, 200, false},
		{"OIP metadata", "GET", "/v2/models/calling-score", nil, nil, 200, false},
		{"OIP JSON", "POST", infer, nil, []byte(`{"id":"a","inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":` + row + `}]}`), 200, false},
		{"OIP binary", "POST", infer, map[string]string{api.HeaderInferenceLength: hl}, bin, 200, false},
		{"OIP binary, chunked", "POST", infer, map[string]string{api.HeaderInferenceLength: hl}, bin, 200, true},
		{"OIP binary, 100-continue", "POST", infer, map[string]string{api.HeaderInferenceLength: hl, "Expect": "100-continue"}, bin, 200, false},
		{"one row, chunked", "POST", "/v1/score", nil, []byte(`{"features":` + row + `}`), 200, true},
		{"OIP binary NaN", "POST", infer, map[string]string{api.HeaderInferenceLength: hlNaN}, binNaN, 400, false},
		{"OIP header past the body", "POST", infer, map[string]string{api.HeaderInferenceLength: "999999"}, bin[:100], 400, false},
		{"OIP bad shape", "POST", infer, nil, []byte(`{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}`), 400, false},
		{"OIP unknown model", "POST", "/v2/models/nope/infer", nil, []byte(`{}`), 404, false},
		{"OIP versioned", "POST", "/v2/models/calling-score/versions/1/infer", nil, []byte(`{"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":` + row + `}]}`), 200, false},
		{"OIP versioned binary", "POST", "/v2/models/calling-score/versions/1/infer", map[string]string{api.HeaderInferenceLength: hl}, bin, 200, false},
		{"OIP version not served", "POST", "/v2/models/calling-score/versions/7/infer", nil, []byte(`{}`), 404, false},
		{"OIP empty version is none", "POST", "/v2/models/calling-score/versions//infer", nil, []byte(`{}`), 400, false},
		{"OIP version then more path", "POST", "/v2/models/calling-score/versions/1/x/infer", nil, []byte(`{}`), 404, false},
		{"OIP versioned metadata", "GET", "/v2/models/calling-score/versions/1", nil, nil, 200, false},
		{"OIP versioned ready", "GET", "/v2/models/calling-score/versions/1/ready", nil, nil, 200, false},
		{"OIP no key", "POST", infer, map[string]string{"X-API-Key": ""}, []byte(`{}`), 401, false},
		{"OIP oversized", "POST", infer, map[string]string{api.HeaderInferenceLength: hl}, append(bin, bin...), 413, false},
		{"one row, gzip", "POST", "/v1/score", map[string]string{"Content-Encoding": "gzip"}, gz([]byte(`{"features":` + row + `}`)), 200, false},
		{"OIP JSON, deflate", "POST", infer, map[string]string{"Content-Encoding": "deflate"}, zl([]byte(`{"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":` + row + `}]}`)), 200, false},
		{"OIP binary, gzip", "POST", infer, map[string]string{api.HeaderInferenceLength: hl, "Content-Encoding": "gzip"}, gz(bin), 200, false},
		{"gzip bomb", "POST", "/v1/score", map[string]string{"Content-Encoding": "gzip"}, bomb, 413, false},
		{"OIP gzip bomb", "POST", infer, map[string]string{"Content-Encoding": "gzip"}, bomb, 413, false},
		{"not gzip", "POST", "/v1/score", map[string]string{"Content-Encoding": "gzip"}, []byte(`{"features":` + row + `}`), 400, false},
		{"brotli", "POST", infer, map[string]string{"Content-Encoding": "br"}, []byte(`{}`), 415, false},
	}
	// A client that honours Expect: 100-continue, as curl does for large bodies.
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got [2]*http.Response
			var bodies [2][]byte
			for i, base := range []string{echoURL, fastURL} {
				req, _ := http.NewRequest(tc.method, base+tc.path, bytes.NewReader(tc.body))
				if tc.chunked {
					req.ContentLength, req.TransferEncoding = -1, []string{"chunked"}
				}
				req.Header.Set("X-API-Key", "sekret")
				for k, v := range tc.headers {
					if v == "" {
						req.Header.Del(k)
					} else {
						req.Header.Set(k, v)
					}
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s server: %v", [2]string{"echo", "fasthttp"}[i], err)
				}
				bodies[i], _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				got[i] = resp
			}
			if got[0].StatusCode != tc.wantStatus {
				t.Fatalf("echo answered %d %s, want %d", got[0].StatusCode, bodies[0], tc.wantStatus)
			}
			if tc.method == "HEAD" && len(bodies[0])+len(bodies[1]) > 0 {
				t.Fatalf("HEAD answered with a body: echo %q, fasthttp %q", bodies[0], bodies[1])
			}
			if got[1].StatusCode != got[0].StatusCode || !bytes.Equal(bodies[1], bodies[0]) {
				t.Fatalf("fasthttp answered %d %q\necho answered %d %q", got[1].StatusCode, bodies[1], got[0].StatusCode, bodies[0])
			}
			for _, h := range []string{"Content-Type", "Retry-After", api.HeaderInferenceLength, "Allow"} {
				if a, b := got[0].Header.Get(h), got[1].Header.Get(h); a != b {
					t.Errorf("%s: echo %q, fasthttp %q", h, a, b)
				}
			}
		})
	}
	// The metrics change with every request, so they are compared by content:
	// both servers count into the same scorer.
	resp, err := http.Get(fastURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(metrics), `modelops_scorer_requests_total{arm="champion",model="calling-score",source="model",version="1"}`) {
		t.Fatalf("metrics on fasthttp: %d\n%.400s", resp.StatusCode, metrics)
	}
}

// A connection that never sends a request must not hold up a graceful close:
// fasthttp would wait for it until its read timeout.
func TestFastServerCloseDropsSilentConnections(t *testing.T) {
	s := api.NewFastServer("127.0.0.1:0", api.NewScorer(discard, api.NewServed("calling-score", fallback.CallingScore{})).Fast(), discard)
	s.ReadTimeout = time.Minute
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// A request on another connection makes sure the server has accepted the
	// silent one too (the listener hands them out in order).
	if status, _ := post(t, s.URL()+"/v1/score", `{"features":[`+nums(39, "0.5")+`]}`); status != 200 {
		t.Fatalf("score: %d", status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close with a silent connection open: %v", err)
	}
	if err := <-s.Done(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// Request line and headers over the read buffer get a clear 431 in the API's
// error shape, not fasthttp's plain text.
func TestFastServerRefusesOversizedHeadersClearly(t *testing.T) {
	url := MustServeFast(t, api.NewScorer(discard, api.NewServed("calling-score", fallback.CallingScore{})))
	req, _ := http.NewRequest("POST", url+"/v1/score", strings.NewReader(`{}`))
	req.Header.Set("X-Big", strings.Repeat("a", 20000))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body wire.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || body.Error.Code != "too_large" {
		t.Fatalf("20 KB of headers: %d %+v (%v), want 431 too_large", resp.StatusCode, body, err)
	}
}

// A client still sending a body far over the limit gets its 413, and its body
// is read to the end rather than refused with a reset: closing a connection with
// unread data resets it, and the client may then lose the 413 to "connection
// reset by peer" (net/http's server lingers the same way).
func TestFastServerAnswersOversizedBodiesWithoutReset(t *testing.T) {
	s := newScorer(mustServed(t))
	s.MaxBodyBytes = 64 << 10
	u := MustServeFast(t, s)
	const size = 6 << 20 // more than the loopback buffers hold: the server must read it
	for _, path := range []string{"/v1/score", "/v2/models/calling-score/infer"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(u, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		wrote := make(chan error, 1)
		go func() {
			_, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, size)
			if err == nil {
				_, err = c.Write(bytes.Repeat([]byte(" "), size))
			}
			wrote <- err
		}()
		answer, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("%s: reading the answer: %v (after %q)", path, err, answer)
		}
		if err := <-wrote; err != nil {
			t.Errorf("%s: sending the body: %v", path, err)
		}
		c.Close()
		if !bytes.HasPrefix(answer, []byte("HTTP/1.1 413 ")) || !bytes.Contains(answer, []byte("larger than 65536 bytes")) {
			t.Errorf("%s: answered %q, want a 413 saying the body is too large", path, answer)
		}
	}
}
