package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
	"github.com/modelops/modelops/web"
)

func TestMain(m *testing.M) {
	testutil.InitORT()
	os.Exit(m.Run())
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// MustServe serves h on 127.0.0.1:0 until the test ends.
func MustServe(tb testing.TB, h http.Handler) string {
	tb.Helper()
	s := api.NewServer("127.0.0.1:0", h, discard)
	if err := s.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close(context.Background()) })
	return s.URL()
}

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

func MustControlPlaneAPI(tb testing.TB) (*client.Client, *registry.Registry) {
	tb.Helper()
	reg, _ := testutil.MustRegistry(tb)
	cp := api.NewControlPlane(reg, discard)
	cp.Dashboard = web.Static
	url := MustServe(tb, cp.Handler())
	return client.New(url), reg
}

func TestControlPlaneStatuses(t *testing.T) {
	ctx := context.Background()
	cl, _ := MustControlPlaneAPI(t)
	good := testutil.MustModel(t, 1)
	junk := filepath.Join(t.TempDir(), "junk.onnx")
	os.WriteFile(junk, []byte("definitely not protobuf"), 0o644)

	_, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: junk})
	if client.StatusOf(err) != 422 {
		t.Fatalf("push of a non-ONNX file: %v, want 422", err)
	}
	if _, err := cl.Push(ctx, client.PushOptions{Model: "Bad_Name", ArtifactPath: good.Path}); client.StatusOf(err) != 400 {
		t.Fatalf("push under an invalid name: %v, want 400", err)
	}
	res, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: good.Path, Card: good.Card})
	if err != nil || !res.Created || res.Version.Number != 1 {
		t.Fatalf("push: %+v %v", res, err)
	}
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1, ExpectRevision: res.Revision}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1, ExpectRevision: res.Revision}); client.StatusOf(err) != 409 {
		t.Fatalf("stale expect_revision: %v, want 409", err)
	}
	if _, err := cl.Promote(ctx, "churn", wire.AliasBody{Version: 1}); client.StatusOf(err) != 404 {
		t.Fatalf("unknown model: %v, want 404", err)
	}
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 7}); client.StatusOf(err) != 404 {
		t.Fatalf("unknown version: %v, want 404", err)
	}
	if _, err := cl.Version(ctx, "calling-score", 1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path, body string
		status             int
		msg                string // in the error message, when set
	}{
		{"POST", "/api/v1/models/calling-score/promote", `{"version":`, 400, "malformed JSON"},
		{"POST", "/api/v1/models/calling-score/promote", `{"version":1,"bogus":true}`, 400, `unknown field "bogus"`},
		{"POST", "/api/v1/models/calling-score/promote", `{"version":"1"}`, 400, "version must be an integer, not string"},
		{"POST", "/api/v1/models/calling-score/promote", `[1]`, 400, "the body must be a JSON object, not an array"},
		{"POST", "/api/v1/models/calling-score/promote", `{}`, 400, ""},
		{"GET", "/api/v1/models/calling-score/versions/abc", "", 400, ""},
		{"GET", "/api/v1/models/calling-score/versions/0", "", 400, ""},
		{"GET", "/api/v1/models/calling-score/versions/1/artifact", "", 200, ""},
		{"GET", "/api/v1/models/..%2f..%2fetc", "", 400, "model name"},
		{"GET", "/api/v1/events?since=-1", "", 400, ""},
		// since=2^64-1 wrapped around to every event from revision 1.
		{"GET", "/api/v1/events?since=18446744073709551615", "", 400, "out of range"},
		{"GET", "/api/v1/events?since=9223372036854775808", "", 400, "out of range"},
		{"GET", "/api/v1/events?since=99999999999999999999999", "", 400, "out of range"},
		{"GET", "/api/v1/events?limit=18446744073709551616", "", 400, "limit=18446744073709551616 is out of range"},
		{"GET", "/api/v1/events?since=9223372036854775807", "", 200, ""},
		{"GET", "/api/v1/watch?since=18446744073709551615", "", 400, "out of range"},
		{"DELETE", "/api/v1/models/calling-score/canary?expect_revision=18446744073709551615", "", 400, "out of range"},
		{"DELETE", "/api/v1/models/calling-score/canary?expect_revision=-3", "", 400, "0 or more"},
		{"GET", "/api/v1/events?last=x", "", 400, `last="x" must be a whole number`},
		{"GET", "/api/v1/events?last=1&limit=1", "", 400, "not both"},
		{"GET", "/api/v1/nowhere", "", 404, ""},
		{"HEAD", "/healthz", "", 200, ""},
		{"HEAD", "/", "", 200, ""},
		{"HEAD", "/api/v1/watch", "", 405, ""},
	} {
		req, _ := http.NewRequest(tc.method, cl.BaseURL+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s %s: %d %s, want %d", tc.method, tc.path, tc.body, resp.StatusCode, b, tc.status)
		}
		if tc.status >= 400 && tc.method != "HEAD" { // a HEAD answer has no body
			var eb wire.ErrorBody
			if json.Unmarshal(b, &eb) != nil || eb.Error.Message == "" {
				t.Errorf("%s %s: error body %s is not JSON {error:{code,message}}", tc.method, tc.path, b)
			}
			// The code names the kind; the message says what is wrong, once.
			if !strings.Contains(eb.Error.Message, tc.msg) || strings.Contains(eb.Error.Message, "Go struct") || strings.HasPrefix(eb.Error.Message, "invalid request") {
				t.Errorf("%s %s %s: message %q, want it to say %q in the request's terms", tc.method, tc.path, tc.body, eb.Error.Message, tc.msg)
			}
		}
	}
}

func TestPushWithWrongDigestStoresNothing(t *testing.T) {
	cl, reg := MustControlPlaneAPI(t)
	good := testutil.MustModel(t, 1)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreateFormFile("artifact", "model.onnx")
	data, _ := os.ReadFile(good.Path)
	w.Write(data)
	mw.Close()
	resp, err := http.Post(cl.BaseURL+"/api/v1/models/calling-score/versions?sha256="+strings.Repeat("0", 64), mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "digest_mismatch") {
		t.Fatalf("wrong sha256: %d %s, want 400 digest_mismatch", resp.StatusCode, b)
	}
	if list, _ := reg.Blobs.List(context.Background()); len(list) != 0 {
		t.Fatalf("blobs after a refused push: %v", list)
	}
}

// A push's reason is kept with the version and in its pushed event, with the
// token's actor; one past 1 KB is refused and stores nothing.
func TestPushKeepsWhoAndWhy(t *testing.T) {
	ctx := context.Background()
	cl, reg := MustControlPlaneAPI(t)
	m := testutil.MustModel(t, 1)
	if _, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: m.Path, Card: m.Card, Reason: strings.Repeat("x", 1025)}); err == nil || !strings.Contains(err.Error(), "reason") {
		t.Fatalf("a push with a reason of 1,025 bytes: %v, want refused naming the reason", err)
	}
	if list, _ := reg.Blobs.List(ctx); len(list) != 0 {
		t.Fatalf("blobs after a refused push: %v", list)
	}
	res, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: m.Path, Card: m.Card, Reason: "retrained on November's traffic"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version.Reason != "retrained on November's traffic" || res.Version.Actor == "" {
		t.Fatalf("push answered %+v, want the reason and the actor", res.Version)
	}
	v, err := cl.Version(ctx, "calling-score", 1)
	if err != nil || v.Reason != "retrained on November's traffic" || v.Actor != res.Version.Actor {
		t.Fatalf("version 1 reads %+v (%v), want the push's reason and actor", v, err)
	}
	evs, err := reg.Events(ctx, registry.EventQuery{Model: "calling-score"})
	if err != nil || len(evs) != 1 || evs[0].Kind != registry.EventPushed || evs[0].Reason != v.Reason || evs[0].Actor != v.Actor {
		t.Fatalf("history %+v (%v), want the pushed event with who and why", evs, err)
	}
}

// An evaluation on the same rows is kept on the model with an event; one that
// names a version the model lacks, or has no rows, is refused and changes
// nothing.
func TestEvaluationIsKeptWithTheModel(t *testing.T) {
	ctx := context.Background()
	cl, reg := MustControlPlaneAPI(t)
	for seed := uint64(1); seed <= 2; seed++ {
		m := testutil.MustModel(t, seed)
		if _, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: m.Path, Card: m.Card}); err != nil {
			t.Fatal(err)
		}
	}
	good := registry.Evaluation{Data: "rows.csv", Rows: 5000, Versions: []int{1, 2}, Confidence: 0.95,
		Figures:     []registry.EvalFigures{{Name: "v1", MSE: 0.006}, {Name: "v2", MSE: 0.0046}},
		Differences: []registry.EvalDifference{{Name: "v2", Baseline: "v1", MSE: -0.0014, Low: -0.0016, High: -0.0011, Verdict: "better"}}}
	before, _ := cl.Model(ctx, "calling-score")
	for _, bad := range []struct {
		ev   registry.Evaluation
		want string
	}{
		{func() registry.Evaluation { e := good; e.Versions = []int{1, 3}; return e }(), "not_found"},
		{func() registry.Evaluation { e := good; e.Rows = 0; return e }(), "rows 0"},
		{func() registry.Evaluation { e := good; e.Confidence = 1.5; return e }(), "confidence"},
		{func() registry.Evaluation { e := good; e.Data = "a\nb"; return e }(), "control characters"},
	} {
		if _, err := cl.RecordEvaluation(ctx, "calling-score", bad.ev); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("evaluation %+v: %v, want refused with %q", bad.ev, err, bad.want)
		}
	}
	if m, _ := cl.Model(ctx, "calling-score"); m.Revision != before.Revision || m.Evaluation != nil {
		t.Fatalf("refused evaluations changed the model: revision %d → %d, evaluation %+v", before.Revision, m.Revision, m.Evaluation)
	}
	got, err := cl.RecordEvaluation(ctx, "calling-score", good)
	if err != nil {
		t.Fatal(err)
	}
	if got.Actor == "" || got.Time.IsZero() || got.Rows != 5000 || len(got.Figures) != 2 {
		t.Fatalf("recorded %+v", got)
	}
	m, err := cl.Model(ctx, "calling-score")
	if err != nil || m.Evaluation == nil || m.Evaluation.Differences[0].Verdict != "better" || m.Evaluation.Figures[1].MSE != 0.0046 || m.Revision != before.Revision+1 {
		t.Fatalf("the model after recording: %+v (%v)", m, err)
	}
	evs, err := reg.Events(ctx, registry.EventQuery{Model: "calling-score", Last: 1})
	if err != nil || len(evs) != 1 || evs[0].Kind != registry.EventEvaluated || evs[0].Reason != "v1, v2 on 5000 rows of rows.csv" {
		t.Fatalf("last event %+v (%v), want evaluated", evs, err)
	}
}

func TestWatchStreamResumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, _ := MustControlPlaneAPI(t)
	for seed := uint64(1); seed <= 2; seed++ {
		m := testutil.MustModel(t, seed)
		if _, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: m.Path}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan registry.Event, 10)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		cl.Watch(wctx, "calling-score", 1, func(e registry.Event) { got <- e })
	}()
	if e := <-got; e.Revision != 2 {
		t.Fatalf("first event after revision 1: %+v", e)
	}
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if e.Revision != 3 || e.Kind != "promoted" || e.To != 2 {
			t.Fatalf("live event %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("no live event on the stream")
	}
	wcancel()
	<-done
}

// The health series takes span (or window, at most what the monitor keeps) and
// step as durations, each more than 0, and at most 500 points; anything else is
// a 400 that says which and why.
func TestSeriesRefusesBadSpans(t *testing.T) {
	reg, _ := testutil.MustRegistry(t)
	cp := api.NewControlPlane(reg, discard)
	cp.Monitor = monitor.New(reg, discard)
	url := MustServe(t, cp.Handler()) + "/api/v1/models/calling-score/series"
	for _, tc := range []struct {
		query  string
		status int
		msg    string
	}{
		{"?span=1m&step=10s", 404, "not found"}, // past the checks, to a model never pushed
		{"?span=-1m", 400, "span=-1m0s: want more than 0"},
		{"?step=0s", 400, "step=0s: want more than 0"},
		{"?step=soon", 400, "must be a duration such as 15m"},
		{"?span=1h&step=1s", 400, "at most 500 points"},
		{"?window=15m&step=10s", 404, "not found"},
		{"?window=24h&step=3m", 404, "not found"},
		{"?window=25h&step=5m", 400, "window=25h0m0s: the monitor keeps the last 24h0m0s"},
		{"?window=15m&span=15m", 400, "window or span, not both"},
	} {
		resp, err := http.Get(url + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.msg) {
			t.Errorf("series%s: %d %s, want %d saying %q", tc.query, resp.StatusCode, b, tc.status, tc.msg)
		}
	}
}

// A push whose stated length passes the limit is refused before its body is
// read: the client here never sends a byte of it, and gets the 413 anyway.
func TestPushTooLargeIsRefusedBeforeItsBody(t *testing.T) {
	reg, _ := testutil.MustRegistry(t)
	cp := api.NewControlPlane(reg, discard)
	cp.MaxPushBytes = 1 << 20
	url := MustServe(t, cp.Handler())
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/models/calling-score/versions?sha256="+strings.Repeat("ab", 32), pr)
	req.ContentLength = 2 << 20
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	done := make(chan struct{})
	var resp *http.Response
	var err error
	go func() { resp, err = http.DefaultClient.Do(req); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("no answer while the body is held back: the control plane waits to read it")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb wire.ErrorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(eb.Error.Message, "larger than") {
		t.Fatalf("push stating 2 MiB to a 1 MiB limit: %d %+v", resp.StatusCode, eb)
	}
	// A push the client lays out states its length, so it is refused the same way.
	big := filepath.Join(t.TempDir(), "big.onnx")
	if err := os.WriteFile(big, make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := client.New(url).Push(context.Background(), client.PushOptions{Model: "calling-score", ArtifactPath: big}); client.StatusOf(err) != http.StatusRequestEntityTooLarge {
		t.Fatalf("client push of 2 MiB: %v, want 413", err)
	}
	// And a push within the limit still goes through with the stated length.
	good := testutil.MustModel(t, 1)
	if res, err := client.New(url).Push(context.Background(), client.PushOptions{Model: "calling-score", ArtifactPath: good.Path, Card: good.Card}); err != nil || !res.Created {
		t.Fatalf("push: %+v %v", res, err)
	}
}

// Free text is bounded: a 900 KB reason was accepted into the event log. Every
// reason is refused past 1 KB with a 400 naming the field and the limit, and
// nothing is recorded; a token's name is at most 64 bytes, no control
// characters.
func TestFreeTextIsBounded(t *testing.T) {
	ctx := context.Background()
	cl, reg := MustControlPlaneAPI(t)
	good := testutil.MustModel(t, 1)
	if _, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: good.Path, Card: good.Card}); err != nil {
		t.Fatal(err)
	}
	before, _ := reg.Revision()
	huge := strings.Repeat("x", 900<<10)
	long := strings.Repeat("y", 1025)
	body := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/api/v1/models/calling-score/promote", body(wire.AliasBody{Version: 1, Reason: huge})},
		{"POST", "/api/v1/models/calling-score/promote", body(wire.AliasBody{Version: 1, Reason: long})},
		{"POST", "/api/v1/models/calling-score/rollback", body(wire.AliasBody{Reason: long})},
		{"POST", "/api/v1/models/calling-score/canary", body(wire.CanaryBody{Version: 1, Traffic: 0.1, Reason: long})},
		{"POST", "/api/v1/models/calling-score/blend", `{"weight":0.5,"reason":"` + long + `"}`},
		{"DELETE", "/api/v1/models/calling-score/canary?reason=" + long, ""},
	} {
		req, _ := http.NewRequest(tc.method, cl.BaseURL+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb wire.ErrorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(eb.Error.Message, `"reason"`) || !strings.Contains(eb.Error.Message, "at most 1024") {
			t.Errorf("%s %s with a %d-byte reason: %d %q, want 400 naming \"reason\" and 1024", tc.method, tc.path, len(tc.body), resp.StatusCode, eb.Error.Message)
		}
	}
	if after, _ := reg.Revision(); after != before {
		t.Errorf("refused requests moved the revision from %d to %d", before, after)
	}
	// 1024 bytes are fine.
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1, Reason: long[:1024]}); err != nil {
		t.Errorf("promote with a 1024-byte reason: %v", err)
	}
	for _, name := range []string{strings.Repeat("n", 65), "ci\x1b]0;pwned\x07", ""} {
		if _, err := cl.CreateToken(ctx, name, registry.RoleViewer); client.StatusOf(err) != 400 || !strings.Contains(err.Error(), `"name"`) {
			t.Errorf("token named %q: %v, want 400 naming \"name\"", name, err)
		}
	}
}

// Promoting the production version, clearing an absent canary and setting the
// same blend answer 200 with "unchanged": true, and append no event: an
// idempotent pipeline may repeat them.
func TestIdempotentRequestsAnswerUnchanged(t *testing.T) {
	ctx := context.Background()
	cl, reg := MustControlPlaneAPI(t)
	m := testutil.MustModel(t, 1)
	if _, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: m.Path, Card: m.Card}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	w := 0.5
	if _, err := cl.SetBlend(ctx, "calling-score", wire.BlendBody{Weight: &w}); err != nil {
		t.Fatal(err)
	}
	before, _ := reg.Events(ctx, registry.EventQuery{})
	for _, tc := range []struct {
		method, path, body string
	}{
		{"POST", "/api/v1/models/calling-score/promote", `{"version":1}`},
		{"DELETE", "/api/v1/models/calling-score/canary", ``},
		{"POST", "/api/v1/models/calling-score/blend", `{"weight":0.5}`},
	} {
		req, _ := http.NewRequest(tc.method, cl.BaseURL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+cl.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ev registry.Event
		err = json.NewDecoder(resp.Body).Decode(&ev)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil || !ev.Unchanged || ev.Revision != before[len(before)-1].Revision {
			t.Errorf("%s %s: %d %+v %v, want 200 unchanged at revision %d", tc.method, tc.path, resp.StatusCode, ev, err, before[len(before)-1].Revision)
		}
	}
	if after, _ := reg.Events(ctx, registry.EventQuery{}); len(after) != len(before) {
		t.Fatalf("the history grew from %d to %d events", len(before), len(after))
	}
}

// A query Go cannot parse whole is refused: echo dropped what it could not
// parse, so a since past the range, after 10,000 other parameters, was read
// as no since at all and answered every event.
func TestMalformedQueriesAreRefused(t *testing.T) {
	cl, _ := MustControlPlaneAPI(t)
	many := strings.Repeat("a&", 10001)
	for _, q := range []string{many + "since=18446744073709551615", "since=1;x=2", "since=%zz"} {
		resp, err := http.Get(cl.BaseURL + "/api/v1/events?" + q)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "malformed query string") {
			t.Errorf("?%s: %d %s, want 400 naming the query", truncate(q, 40), resp.StatusCode, truncate(string(body), 200))
		}
	}
}
