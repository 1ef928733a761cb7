package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

func TestRolesAndTokens(t *testing.T) {
	ctx := context.Background()
	reg, _ := testutil.MustRegistry(t)
	cp := api.NewControlPlane(reg, discard)
	cp.RequireAuth = true
	url := MustServe(t, cp.Handler())
	adminSecret := registry.NewTokenSecret()
	if _, err := reg.AddToken("alice", registry.RoleAdmin, adminSecret); err != nil {
		t.Fatal(err)
	}
	as := func(secret string) *client.Client { c := client.New(url); c.Token = secret; return c }
	admin := as(adminSecret)
	viewer, err := admin.CreateToken(ctx, "dashboard", registry.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	node, err := admin.CreateToken(ctx, "node-1", registry.RoleScorer)
	if err != nil {
		t.Fatal(err)
	}
	m := testutil.MustModel(t, 1)
	push := func(c *client.Client) error {
		_, err := c.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: m.Path, Card: m.Card})
		return err
	}

	if _, err := client.New(url).Models(ctx); client.StatusOf(err) != 401 {
		t.Fatalf("no token: %v, want 401", err)
	}
	if _, err := as("mo_000000000000_" + strings.Repeat("0", 40)).Models(ctx); client.StatusOf(err) != 401 {
		t.Fatalf("unknown token: %v, want 401", err)
	}
	if _, err := as("Bearer nonsense").Models(ctx); client.StatusOf(err) != 401 {
		t.Fatalf("malformed token: %v, want 401", err)
	}
	if err := push(as(viewer.Secret)); client.StatusOf(err) != 403 {
		t.Fatalf("viewer push: %v, want 403", err)
	}
	if err := push(as(node.Secret)); client.StatusOf(err) != 403 {
		t.Fatalf("scorer push: %v, want 403", err)
	}
	if err := push(admin); err != nil {
		t.Fatalf("admin push: %v", err)
	}
	ev, err := admin.Promote(ctx, "calling-score", wire.AliasBody{Version: 1})
	if err != nil || ev.Actor != "alice" {
		t.Fatalf("promote: %+v %v; want the event to name the token", ev, err)
	}
	if _, err := as(viewer.Secret).Models(ctx); err != nil {
		t.Fatalf("viewer read: %v", err)
	}
	if _, err := as(viewer.Secret).Rollback(ctx, "calling-score", wire.AliasBody{}); client.StatusOf(err) != 403 {
		t.Fatalf("viewer rollback: %v, want 403", err)
	}
	if rc, _, err := as(viewer.Secret).Artifact(ctx, "calling-score", 1); client.StatusOf(err) != 403 {
		if rc != nil {
			rc.Close()
		}
		t.Fatalf("viewer artifact download: %v, want 403 (scorers only)", err)
	}
	rc, _, err := as(node.Secret).Artifact(ctx, "calling-score", 1)
	if err != nil {
		t.Fatalf("scorer artifact download: %v", err)
	}
	rc.Close()
	if _, err := as(node.Secret).CreateToken(ctx, "x", registry.RoleAdmin); client.StatusOf(err) != 403 {
		t.Fatalf("scorer creating tokens: %v, want 403", err)
	}
	if _, err := admin.CreateToken(ctx, "x", "root"); client.StatusOf(err) != 400 {
		t.Fatalf("unknown role: %v, want 400", err)
	}
	if err := admin.RevokeToken(ctx, viewer.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := as(viewer.Secret).Models(ctx); client.StatusOf(err) != 401 {
		t.Fatalf("revoked token: %v, want 401", err)
	}
	// The last admin token cannot be revoked: nobody could make another. With a
	// second admin the first may go.
	aliceID := strings.Split(adminSecret, "_")[1]
	if err := admin.RevokeToken(ctx, aliceID); client.StatusOf(err) != 409 || !strings.Contains(err.Error(), "last admin token") {
		t.Fatalf("revoking the last admin token: %v, want 409", err)
	}
	if _, err := admin.Models(ctx); err != nil {
		t.Fatalf("after the refused revoke the admin token: %v", err)
	}
	bob, err := admin.CreateToken(ctx, "bob", registry.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if err := as(bob.Secret).RevokeToken(ctx, aliceID); err != nil {
		t.Fatalf("revoking an admin token with another left: %v", err)
	}
	if _, err := reg.AddToken("bootstrap-admin", registry.RoleAdmin, adminSecret); !errors.Is(err, registry.ErrConflict) || !strings.Contains(err.Error(), "was revoked") || !strings.Contains(err.Error(), "modelctl token new") {
		t.Fatalf("a revoked secret as MODELOPS_ADMIN_TOKEN again: %v, want a conflict saying how to recover", err)
	}
	ts, err := as(bob.Secret).Tokens(ctx)
	if err != nil || len(ts) != 4 {
		t.Fatalf("tokens %+v %v", ts, err)
	}
	for _, tk := range ts {
		if tk.Hash != "" {
			t.Fatal("the token list shows a hash")
		}
	}
}

func TestSlowClientsCannotHoldTheServer(t *testing.T) {
	s := api.NewServer("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}), discard)
	s.ReadHeaderTimeout, s.ReadTimeout = 200*time.Millisecond, 400*time.Millisecond
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	addr := strings.TrimPrefix(s.URL(), "http://")
	for name, send := range map[string]string{
		"headers never finish": "POST /api/v1/models HTTP/1.1\r\nHost: x\r\n",
		"body never finishes":  "POST /api/v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"features\":[",
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

// A token pasted into the sign-in form with spaces or a line break around it (as
// copied from a terminal) signs in: a token never holds either.
func TestSignInTakesATokenWithSpacesAround(t *testing.T) {
	reg, _ := testutil.MustRegistry(t)
	cp := api.NewControlPlane(reg, discard)
	cp.RequireAuth = true
	url := MustServe(t, cp.Handler())
	secret := registry.NewTokenSecret()
	if _, err := reg.AddToken("alice", registry.RoleAdmin, secret); err != nil {
		t.Fatal(err)
	}
	for _, typed := range []string{secret, "  " + secret + "\n", "\t" + secret + " "} {
		body, _ := json.Marshal(map[string]string{"token": typed})
		resp, err := http.Post(url+"/ui/login", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("sign in with %q: %d, want 200", typed, resp.StatusCode)
		}
	}
	body, _ := json.Marshal(map[string]string{"token": secret[:len(secret)-1] + " "})
	if resp, err := http.Post(url+"/ui/login", "application/json", bytes.NewReader(body)); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong token with a space: %v %v, want 401", resp, err)
	}
}

// Sign-in takes JSON only: a cross-site form can post text/plain (or
// urlencoded) without a preflight, and signed a browser in with the attacker's
// token. Every state-changing dashboard request from another site is refused,
// by Sec-Fetch-Site or, from browsers without it, by Origin.
func TestDashboardRefusesCrossSiteRequests(t *testing.T) {
	reg, _ := testutil.MustRegistry(t)
	cp := api.NewControlPlane(reg, discard)
	cp.RequireAuth = true
	url := MustServe(t, cp.Handler())
	secret := registry.NewTokenSecret()
	if _, err := reg.AddToken("alice", registry.RoleAdmin, secret); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"token": secret})
	host := strings.TrimPrefix(url, "http://")
	send := func(method, path, contentType string, body []byte, header ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b
	}
	for _, tc := range []struct {
		name        string
		contentType string
		header      []string
		status      int
	}{
		{"text/plain form", "text/plain", nil, http.StatusUnsupportedMediaType},
		{"urlencoded form", "application/x-www-form-urlencoded", nil, http.StatusUnsupportedMediaType},
		{"no content type", "", nil, http.StatusUnsupportedMediaType},
		{"cross-site fetch", "application/json", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"same-site, other origin", "application/json", []string{"Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
		{"other Origin", "application/json", []string{"Origin", "http://evil.example"}, http.StatusForbidden},
		{"text/plain cross-site", "text/plain", []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"}, http.StatusForbidden},
		{"same-origin", "application/json; charset=utf-8", []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://" + host}, http.StatusOK},
		{"own Origin", "application/json", []string{"Origin", "http://" + host}, http.StatusOK},
	} {
		resp, b := send("POST", "/ui/login", tc.contentType, body, tc.header...)
		if resp.StatusCode != tc.status {
			t.Errorf("login, %s: %d %s, want %d", tc.name, resp.StatusCode, b, tc.status)
		}
		if tc.status != http.StatusOK && len(resp.Cookies()) > 0 {
			t.Errorf("login, %s: refused yet set a cookie", tc.name)
		}
	}

	// A signed-in browser: its changes need the same origin too, CSRF token
	// or not.
	resp, b := send("POST", "/ui/login", "application/json", body, "Sec-Fetch-Site", "same-origin")
	var info api.SessionInfo
	if err := json.Unmarshal(b, &info); err != nil || len(resp.Cookies()) == 0 {
		t.Fatalf("login: %s %v", b, err)
	}
	cookie := resp.Cookies()[0]
	change := func(site string) int {
		req, _ := http.NewRequest("POST", url+"/api/v1/tokens", strings.NewReader(`{"name":"x","role":"viewer"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-CSRF-Token", info.CSRF)
		req.Header.Set("Sec-Fetch-Site", site)
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := change("cross-site"); got != http.StatusForbidden {
		t.Errorf("a cross-site change with the session and its CSRF token: %d, want 403", got)
	}
	if got := change("same-origin"); got != http.StatusCreated {
		t.Errorf("a same-origin change: %d, want 201", got)
	}
	if resp, _ := send("POST", "/ui/logout", "", nil, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site sign-out: %d, want 403", resp.StatusCode)
	}
}

// 30,000 sign-ins with one viewer token keep the session count at the cap:
// the first sessions end, the newest works.
func TestManySignInsKeepSessionsCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("short: 30,000 sign-ins")
	}
	reg, _ := testutil.MustRegistry(t)
	cp := api.NewControlPlane(reg, discard)
	cp.RequireAuth = true
	url := MustServe(t, cp.Handler())
	secret := registry.NewTokenSecret()
	if _, err := reg.AddToken("viewer", registry.RoleViewer, secret); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"token": secret})
	var first, last *http.Cookie
	for i := range 30000 {
		resp, err := http.Post(url+"/ui/login", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(resp.Cookies()) == 0 {
			t.Fatalf("sign-in %d: %s", i, resp.Status)
		}
		if i == 0 {
			first = resp.Cookies()[0]
		}
		last = resp.Cookies()[0]
	}
	if got := cp.SessionCount(); got != 100 {
		t.Errorf("after 30,000 sign-ins of one token: %d sessions, want the cap, 100", got)
	}
	status := func(c *http.Cookie) int {
		req, _ := http.NewRequest("GET", url+"/ui/session", nil)
		req.AddCookie(c)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(first); got != http.StatusUnauthorized {
		t.Errorf("the first of 30,000 sessions: %d, want 401 (pushed out)", got)
	}
	if got := status(last); got != http.StatusOK {
		t.Errorf("the newest session: %d, want 200", got)
	}
}

// A viewer token holding watch streams open in a loop (each a connection, two
// goroutines and about 40 KB) grew memory without bound and would run the
// control plane out of file descriptors: streams are capped per token and in
// all, and a stream closed frees its place.
func TestWatchStreamsAreCapped(t *testing.T) {
	reg, _ := testutil.MustRegistry(t)
	cp := api.NewControlPlane(reg, discard)
	cp.RequireAuth = true
	cp.MaxWatchStreamsPerToken, cp.MaxWatchStreams = 3, 4
	url := MustServe(t, cp.Handler())
	secret := func(name string) string {
		s := registry.NewTokenSecret()
		if _, err := reg.AddToken(name, registry.RoleViewer, s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	viewer, other, third := secret("viewer"), secret("other"), secret("third")
	open := func(secret string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url+"/api/v1/watch", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	var held []*http.Response
	for range 3 {
		resp := open(viewer)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream within the token's share: %d", resp.StatusCode)
		}
		held = append(held, resp)
	}
	if resp := open(viewer); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a 4th stream of one token: %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := open(other); resp.StatusCode != http.StatusOK {
		t.Fatalf("another token's stream: %d, want 200", resp.StatusCode)
	}
	if resp := open(third); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a stream past the total: %d, want 503", resp.StatusCode)
	}
	held[0].Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := open(third)
		if resp.StatusCode == http.StatusOK {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream never freed its place: %d", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// With auth off the streams are counted per connecting address, which a
// client cannot change with X-Forwarded-For.
func TestWatchStreamsWithoutAuthAreCappedPerAddress(t *testing.T) {
	reg, _ := testutil.MustRegistry(t)
	cp := api.NewControlPlane(reg, discard)
	cp.MaxWatchStreamsPerToken = 2
	url := MustServe(t, cp.Handler())
	open := func(i int) int {
		req, err := http.NewRequest(http.MethodGet, url+"/api/v1/watch", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.0.0.%d", i))
		req.Header.Set("X-Real-IP", fmt.Sprintf("10.0.1.%d", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp.StatusCode
	}
	for i := range 2 {
		if status := open(i); status != http.StatusOK {
			t.Fatalf("stream %d: %d", i, status)
		}
	}
	if status := open(9); status != http.StatusTooManyRequests {
		t.Fatalf("a 3rd stream from the same address, claiming another: %d, want 429", status)
	}
}
