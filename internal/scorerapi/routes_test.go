package scorerapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Every route answers on the one fasthttp router: its method (HEAD as GET,
// without a body), 404 and 405 in the scorer's error shape, model paths with
// and without a version, and /metrics in Prometheus' text format.
func TestRoutes(t *testing.T) {
	url := MustServe(t, newScorer(mustServed(t)).Handler())
	row := `{"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":[` + nums(39, "0.5") + `]}]}`
	for _, tc := range []struct {
		method, path, body string
		status             int
		has                string
	}{
		{"GET", "/healthz", "", 200, `"ok"`},
		{"HEAD", "/healthz", "", 200, ""},
		{"GET", "/readyz", "", 200, "ready"},
		{"GET", "/v1/status", "", 200, `"calling-score"`},
		{"GET", "/metrics", "", 200, "# TYPE"},
		{"GET", "/v2", "", 200, "binary_tensor_data"},
		{"GET", "/v2/health/live", "", 200, "true"},
		{"GET", "/v2/health/ready", "", 200, "true"},
		{"POST", "/v2/repository/index", "", 200, "READY"},
		{"GET", "/v2/models/calling-score", "", 200, `"inputs"`},
		{"GET", "/v2/models/calling-score/ready", "", 200, "true"},
		{"GET", "/v2/models/calling-score/versions/1/ready", "", 200, `"version":"1"`},
		{"POST", "/v2/models/calling-score/infer", row, 200, `"outputs"`},
		{"POST", "/v2/models/calling-score/versions//infer", row, 200, `"outputs"`},
		{"POST", "/v2/models/calling-score/versions/1/infer", row, 200, `"outputs"`},
		{"GET", "/v1/score", "", 405, `"method_not_allowed"`},
		{"POST", "/healthz", "", 405, `"method_not_allowed"`},
		{"GET", "/nope", "", 404, `"not_found"`},
		{"GET", "/v2/models/calling-score/explode", "", 404, `"not_found"`},
		{"GET", "/v2/models/", "", 404, `"not_found"`},
	} {
		req, _ := http.NewRequest(tc.method, url+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.has) {
			t.Errorf("%s %s: %d %.200s, want %d with %q", tc.method, tc.path, resp.StatusCode, b, tc.status, tc.has)
		}
		if tc.method == "HEAD" && len(b) != 0 {
			t.Errorf("HEAD %s answered a body: %q", tc.path, b)
		}
		if tc.status >= 400 {
			var e struct {
				Error struct{ Code, Message string }
			}
			if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
				t.Errorf("%s %s: error body %q is not the scorer's error shape", tc.method, tc.path, b)
			}
		}
	}
}
