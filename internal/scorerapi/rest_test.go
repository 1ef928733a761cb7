package scorerapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/scorerapi"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// MustServe serves h on fasthttp on 127.0.0.1:0 until the test ends.
func MustServe(tb testing.TB, h *scorerapi.Handler) string {
	tb.Helper()
	s := scorerapi.NewServer("127.0.0.1:0", h, discard)
	if err := s.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close(context.Background()) })
	return s.URL()
}

// newScorer is the scoring API with a generous latency budget: a loaded CI
// machine under the race detector must not turn a slow run into a fallback in
// tests that are about something else (the budget has tests of its own).
func newScorer(models ...*scorerapi.Served) *scorerapi.Scorer {
	s := scorerapi.NewScorer(discard, models...)
	s.Budget = 10 * time.Second
	return s
}

// MustScorerAPI serves calling-score with a loaded session of a fresh model.
func MustScorerAPI(tb testing.TB) (string, *loader.Slot) {
	tb.Helper()
	served := mustServed(tb)
	return MustServe(tb, newScorer(served).Handler()), served.Production
}

// mustServed is calling-score with a session of a fresh model loaded as v1.
func mustServed(tb testing.TB) *scorerapi.Served {
	tb.Helper()
	m := testutil.MustModel(tb, 1)
	s, err := loader.Open(m.Path, loader.DefaultOptions())
	if err != nil {
		tb.Fatal(err)
	}
	served := scorerapi.NewServed("calling-score", fallback.CallingScore{})
	served.Production.Swap(loader.NewLoaded(s, 1, m.Digest, nil))
	tb.Cleanup(served.Production.Close)
	return served
}

func TestScoreRefusesBadInput(t *testing.T) {
	url, _ := MustScorerAPI(t)
	tests := []struct {
		name   string
		body   string
		status int
		want   string
	}{
		{"malformed JSON", `{"features":[1,2`, 400, "malformed JSON"},
		{"empty body", ``, 400, "body is empty"},
		{"not an object", `[1,2,3]`, 400, "malformed request"},
		{"no input", `{}`, 400, "no input"},
		{"both forms", `{"features":[` + nums(39, "0") + `],"rows":[[` + nums(39, "0") + `]]}`, 400, "not both"},
		{"too few features", `{"features":[` + nums(38, "0.1") + `]}`, 400, "features has 38 numbers, model calling-score takes 39"},
		{"one feature", `{"features":[0.1]}`, 400, "features has 1 number, model calling-score takes 39"},
		{"too many in a row", `{"rows":[[` + nums(39, "0") + `],[` + nums(40, "0") + `]]}`, 400, "row 1 has 40 numbers"},
		{"string in a row", `{"rows":[[` + nums(39, "0") + `],[0,0,0,"x",` + nums(35, "0") + `]]}`, 400, `row 1 position 3: "x" is not a finite number`},
		{"NaN as string", `{"features":["NaN",` + nums(38, "0") + `]}`, 400, `features position 0: "NaN"`},
		{"null feature", `{"features":[0,null,` + nums(37, "0") + `]}`, 400, "features position 1: null is not a finite number"},
		{"null row", `{"rows":[[` + nums(39, "0") + `],null]}`, 400, "row 1 has 0 numbers"},
		{"beyond float32", `{"features":[1e39,` + nums(38, "0") + `]}`, 400, "features position 0: 1e+39 is outside the float32 range"},
		{"beyond float64", `{"features":[1e999,` + nums(38, "0") + `]}`, 400, "features position 0: 1e999 is not a finite number"},
		{"unknown field", `{"feature":[1]}`, 400, "unknown field"},
		{"an array, not an object", `[1,2]`, 400, "the body must be a JSON object, not an array"},
		{"numeric key", `{"key":7,"features":[` + nums(39, "0") + `]}`, 400, "malformed request: key must be a string, not number"},
		{"budget as a string", `{"budget_ms":"5","features":[` + nums(39, "0") + `]}`, 400, "budget_ms must be a number, not string"},
		{"unknown model", `{"model":"churn","features":[1]}`, 404, `unknown model "churn"`},
		{"trailing data", `{"features":[` + nums(39, "0") + `]} {}`, 400, "trailing data"},
		{"oversized", `{"rows":[` + strings.Repeat("["+nums(39, "0.123456789")+"],", 3000) + `]}`, 413, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, url+"/v1/score", tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			var eb wire.ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code == "" {
				t.Fatalf("error body %s is not {\"error\":{\"code\",\"message\"}}", body)
			}
			if !strings.Contains(eb.Error.Message, tt.want) {
				t.Fatalf("message %q, want it to contain %q", eb.Error.Message, tt.want)
			}
		})
	}
}

func TestScoreRows(t *testing.T) {
	url, _ := MustScorerAPI(t)
	status, body := post(t, url+"/v1/score", `{"rows":[[`+nums(39, "0.2")+`],[`+nums(39, "0.9")+`]]}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var r wire.ScoreResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Scores) != 2 || r.Source != scorerapi.SourceModel || r.Version != 1 || r.Score != nil {
		t.Fatalf("rows response %s", body)
	}
	if r.Scores[0] == r.Scores[1] {
		t.Fatalf("two different rows scored the same: %v", r.Scores)
	}
}

func TestScoreFallsBackWithoutModel(t *testing.T) {
	h := newScorer(scorerapi.NewServed("calling-score", fallback.CallingScore{}))
	url := MustServe(t, h.Handler())
	row := testutil.Row(0.4)
	b, _ := json.Marshal(map[string]any{"features": row})
	status, body := post(t, url+"/v1/score", string(b))
	var r wire.ScoreResponse
	json.Unmarshal(body, &r)
	if status != 200 || r.Source != scorerapi.SourceFallback || r.Reason != fallback.ReasonNoModel {
		t.Fatalf("%d %s, want 200 fallback no_model", status, body)
	}
	if want := (fallback.CallingScore{}).Score(row); *r.Score != want {
		t.Fatalf("fallback score %v, rules say %v", *r.Score, want)
	}
}

// MustControlPlaneAPI serves the control plane API over a fresh registry.

func post(tb testing.TB, url, body string) (int, []byte) {
	tb.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func nums(n int, v string) string { return strings.TrimSuffix(strings.Repeat(v+",", n), ",") }

func TestScorerAPIKeys(t *testing.T) {
	h := scorerapi.NewScorer(discard, scorerapi.NewServed("calling-score", fallback.CallingScore{}))
	h.APIKeys = []string{"k-123"}
	url := MustServe(t, h.Handler())
	body := `{"features":[` + nums(39, "0.5") + `]}`
	for _, tc := range []struct {
		header, value string
		want          int
	}{{"", "", 401}, {"X-API-Key", "wrong", 401}, {"X-API-Key", "k-123", 200}, {"Authorization", "Bearer k-123", 200}} {
		req, _ := http.NewRequest("POST", url+"/v1/score", strings.NewReader(body))
		if tc.header != "" {
			req.Header.Set(tc.header, tc.value)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %q: %d, want %d", tc.header, tc.value, resp.StatusCode, tc.want)
		}
	}
	if resp, err := http.Get(url + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz needs no key: %v", resp)
	}
	// OIP v2 refuses in its own error shape, so Triton and KServe clients can
	// show the reason.
	status, b := post(t, url+"/v2/models/calling-score/infer", `{"inputs":[]}`)
	var oip map[string]any
	if err := json.Unmarshal(b, &oip); status != 401 || err != nil || len(oip) != 1 || !strings.Contains(fmt.Sprint(oip["error"]), "API key") {
		t.Fatalf("OIP infer without a key: %d %s, want 401 {\"error\": …}", status, b)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)

	scorer := scorerapi.NewScorer(discard, scorerapi.NewServed("calling-score", fallback.CallingScore{}))
	for name, s := range map[string]*scorerapi.Server{
		"fasthttp": scorerapi.NewServer("127.0.0.1:0", scorer.Handler(), discard),
	} {
		s.TLSCert, s.TLSKey = certPath, keyPath
		if err := s.Open(); err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background())
		if !strings.HasPrefix(s.URL(), "https://") {
			t.Fatalf("%s: URL %s", name, s.URL())
		}
		pool := x509.NewCertPool()
		pool.AddCert(mustParse(t, der))
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := hc.Get(s.URL() + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: over TLS: %v %v", name, resp, err)
		}
		resp.Body.Close()
		resp, err = hc.Post(s.URL()+"/v1/score", "application/json", strings.NewReader(`{"features":[`+nums(39, "0.5")+`]}`))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: scoring over TLS: %v %v", name, resp, err)
		}
		resp.Body.Close()
		// Plain HTTP on the TLS port is not served, and is told why, on both
		// servers alike.
		resp, err = http.Get(strings.Replace(s.URL(), "https", "http", 1) + "/healthz")
		if err != nil {
			t.Fatalf("%s: plain HTTP on the TLS port: %v, want a 400 saying why", name, err)
		}
		said, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(said), "HTTP request to an HTTPS server") {
			t.Fatalf("%s: plain HTTP on the TLS port: %d %q", name, resp.StatusCode, said)
		}
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSlowClientsCannotHoldTheServer(t *testing.T) {
	s := scorerapi.NewServer("127.0.0.1:0", scorerapi.NewScorer(discard, scorerapi.NewServed("calling-score", fallback.CallingScore{})).Handler(), discard)
	s.ReadTimeout = 400 * time.Millisecond
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	addr := strings.TrimPrefix(s.URL(), "http://")
	for name, send := range map[string]string{
		"headers never finish": "POST /v1/score HTTP/1.1\r\nHost: x\r\n",
		"body never finishes":  "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"features\":[",
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte(send))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		buf := make([]byte, 512)
		for {
			if _, err := conn.Read(buf); err != nil {
				break
			}
		}
		conn.Close()
		if waited := time.Since(start); waited > 3*time.Second {
			t.Errorf("%s: the server held the connection %s", name, waited)
		}
	}
}
