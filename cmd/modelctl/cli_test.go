package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
)

// cliEnv runs modelctl in-process with exactly the environment vars gives.
func cliEnv(t *testing.T, vars map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }}
	err := e.run(context.Background(), args)
	return out.String(), errb.String(), err
}

// mustPromoted is a control plane with calling-score v1 pushed (with its
// card) and promoted.
func mustPromoted(t *testing.T) string {
	t.Helper()
	url := mustControlPlane(t)
	m := testutil.MustModel(t, 1)
	card := filepath.Join(t.TempDir(), "card.json")
	if err := os.WriteFile(card, m.Card, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli(t, url, "push", m.Path, "--model", "calling-score", "--card", card); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli(t, url, "promote", "calling-score", "1"); err != nil {
		t.Fatal(err)
	}
	return url
}

// Help is asked for as kubectl's is, and answers on stdout with exit 0.
func TestHelpGoesToStdoutAndSucceeds(t *testing.T) {
	for _, verb := range [][]string{{"promote"}, {"status"}, {"push"}, {"token", "create"}, {"config", "set-context"}, {"history"}} {
		name := strings.Join(verb, " ")
		for _, args := range [][]string{append(append([]string(nil), verb...), "--help"), append([]string{"help"}, verb...), append(append([]string(nil), verb...), "-h")} {
			out, errOut, err := cli(t, "http://127.0.0.1:1", args...)
			if err != nil || errOut != "" || !strings.Contains(out, "Usage:") || !strings.Contains(out, "modelctl "+name) {
				t.Errorf("modelctl %s: err %v, stderr %q, stdout %q; want %s's help on stdout", strings.Join(args, " "), err, errOut, out, name)
			}
		}
	}
	// The verbs' own help names their flags.
	out, _, _ := cli(t, "http://127.0.0.1:1", "promote", "--help")
	for _, want := range []string{"--expect-revision", "--reason", "--force", "-o, --output"} {
		if !strings.Contains(out, want) {
			t.Errorf("promote --help does not name %s:\n%s", want, out)
		}
	}
	// Bare modelctl lists the verbs.
	if out, _, err := cli(t, "http://127.0.0.1:1"); err != nil || !strings.Contains(out, "promote") || !strings.Contains(out, "completion") {
		t.Errorf("modelctl alone: %q %v", out, err)
	}
}

// A mistyped verb or flag gets the nearest ones, and fails.
func TestMistakesSuggestTheNearest(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"promot", "calling-score", "1"}, []string{`unknown command "promot"`, "Did you mean this?", "promote"}},
		{[]string{"stauts"}, []string{"Did you mean this?", "status"}},
		{[]string{"token", "lsit"}, []string{`unknown command "lsit" for "modelctl token"`, "list"}},
		{[]string{"config", "use-contxt", "x"}, []string{"use-context"}},
		{[]string{"promote", "calling-score", "1", "--reaso", "x"}, []string{"unknown flag: --reaso", "Did you mean this?", "--reason"}},
		{[]string{"history", "--lmit", "3"}, []string{"--limit"}},
		{[]string{"status", "--wacth"}, []string{"--watch"}},
		{[]string{"list", "--zzzzzz"}, []string{"unknown flag: --zzzzzz", "modelctl list --help"}},
	} {
		_, _, err := cli(t, "http://127.0.0.1:1", tc.args...)
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("modelctl %s: %v, want it to say %q", strings.Join(tc.args, " "), err, want)
			}
		}
	}
}

// The completion scripts load cobra's completion, which asks modelctl itself
// (`__complete`): it names the verbs, and a live control plane's models.
func TestCompletion(t *testing.T) {
	url := mustPromoted(t)
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, _, err := cli(t, url, "completion", shell)
		if err != nil || len(out) < 500 || !strings.Contains(out, "modelctl") || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: %v, %d bytes: %.200q", shell, err, len(out), out)
		}
	}
	out, _, err := cli(t, url, "__complete", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"promote", "rollback", "status", "config", "token", "completion"} {
		if !regexp.MustCompile(`(?m)^` + verb + `\t`).MatchString(out) {
			t.Errorf("completion of a verb does not offer %s:\n%s", verb, out)
		}
	}
	if out, _, err := cli(t, url, "__complete", "promote", ""); err != nil || !regexp.MustCompile(`(?m)^calling-score$`).MatchString(out) {
		t.Errorf("completion of promote's MODEL does not offer calling-score: %q %v", out, err)
	}
	// --server on the line being completed is the server asked.
	if out, _, err := cli(t, "http://127.0.0.1:1", "__complete", "--server", url, "promote", ""); err != nil || !regexp.MustCompile(`(?m)^calling-score$`).MatchString(out) {
		t.Errorf("completion with --server: %q %v", out, err)
	}
	if out, _, err := cli(t, url, "__complete", "list", "-o", ""); err != nil || !strings.Contains(out, "yaml") || !strings.Contains(out, "jsonpath=") {
		t.Errorf("completion of -o: %q %v", out, err)
	}
}

// -o json, yaml and jsonpath work on every verb that prints, and parse back.
func TestOutputFormatsParseBack(t *testing.T) {
	url := mustPromoted(t)
	get := func(args ...string) string {
		t.Helper()
		out, _, err := cli(t, url, args...)
		if err != nil {
			t.Fatalf("modelctl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	var ms []registry.Model
	if err := yaml.Unmarshal([]byte(get("list", "-o", "yaml")), &ms); err != nil || len(ms) != 1 || ms[0].Name != "calling-score" || ms[0].Production != 1 {
		t.Fatalf("list -o yaml: %+v %v", ms, err)
	}
	if got := get("list", "-o", "jsonpath={[*].name}"); got != "calling-score\n" {
		t.Fatalf("list -o jsonpath: %q", got)
	}
	if got := get("-o", "jsonpath={.production} {.revision}", "show", "calling-score"); got != "1 2\n" {
		t.Fatalf("show -o jsonpath: %q", got)
	}
	var v registry.Version
	if err := yaml.Unmarshal([]byte(get("show", "calling-score", "1", "-o", "yaml")), &v); err != nil || v.Number != 1 || len(v.Card) == 0 {
		t.Fatalf("show VERSION -o yaml: %+v %v", v, err)
	}
	var status struct {
		Models []monitor.ModelHealth `json:"models"`
		Fleet  []monitor.NodeState   `json:"fleet"`
	}
	if err := yaml.Unmarshal([]byte(get("status", "-o", "yaml")), &status); err != nil || len(status.Models) != 1 || status.Models[0].Production != 1 || status.Fleet == nil {
		t.Fatalf("status -o yaml: %+v %v", status, err)
	}
	var evs []registry.Event
	if err := yaml.Unmarshal([]byte(get("history", "-o", "yaml")), &evs); err != nil || len(evs) != 2 || evs[1].Kind != registry.EventPromoted {
		t.Fatalf("history -o yaml: %+v %v", evs, err)
	}
	if got := get("history", "-o", `jsonpath={range [*]}{.kind}{"\n"}{end}`); got != "pushed\npromoted\n" {
		t.Fatalf("history -o jsonpath range: %q", got)
	}
	var p registry.Policy
	if err := json.Unmarshal([]byte(get("policy", "calling-score", "-o", "json")), &p); err != nil || p.MaxErrorRate == 0 {
		t.Fatalf("policy -o json: %+v %v", p, err)
	}
	var secret struct{ Secret string }
	if err := json.Unmarshal([]byte(get("token", "new", "-o", "json")), &secret); err != nil || !strings.HasPrefix(secret.Secret, "mo_") {
		t.Fatalf("token new -o json: %+v %v", secret, err)
	}
	var created struct{ ID, Secret string }
	if err := json.Unmarshal([]byte(get("token", "create", "--name", "ci", "--role", "viewer", "-o", "json")), &created); err != nil || !strings.HasPrefix(created.Secret, "mo_") {
		t.Fatalf("token create -o json: %+v %v", created, err)
	}
	var revoked struct {
		ID      string
		Revoked bool
	}
	if err := json.Unmarshal([]byte(get("token", "revoke", created.ID, "-o", "json")), &revoked); err != nil || !revoked.Revoked || revoked.ID != created.ID {
		t.Fatalf("token revoke -o json: %+v %v", revoked, err)
	}
	backup := filepath.Join(t.TempDir(), "b.db")
	var b struct {
		File    string
		Bytes   int64
		Checked bool
	}
	if err := json.Unmarshal([]byte(get("backup", "--out", backup, "-o", "json")), &b); err != nil || b.File != backup || b.Bytes == 0 || !b.Checked {
		t.Fatalf("backup -o json: %+v %v", b, err)
	}
	dir := t.TempDir()
	var gen struct {
		File string
		Rows int
	}
	data := filepath.Join(dir, "d.csv")
	if err := json.Unmarshal([]byte(get("gen-data", "--samples", "300", "--out", data, "-o", "json")), &gen); err != nil || gen.Rows != 300 || gen.File != data {
		t.Fatalf("gen-data -o json: %+v %v", gen, err)
	}
	var trained struct {
		Model, Card string
		EpochsRun   int `json:"epochs_run"`
		Metrics     map[string]struct{ MSE float64 }
	}
	if err := json.Unmarshal([]byte(get("train", "--data", data, "--epochs", "1", "--quiet", "--out", dir, "-o", "json")), &trained); err != nil || trained.EpochsRun != 1 || trained.Metrics["test_model"].MSE == 0 {
		t.Fatalf("train -o json: %+v %v", trained, err)
	}
	var card struct {
		Card   string
		Golden int
	}
	cardPath := filepath.Join(dir, "other.card.json")
	if err := json.Unmarshal([]byte(get("card", trained.Model, "--data", data, "--out", cardPath, "-o", "json")), &card); err != nil || card.Card != cardPath || card.Golden == 0 {
		t.Fatalf("card -o json: %+v %v", card, err)
	}
	if got := get("version", "-o", "jsonpath={.version}"); got != Version+"\n" {
		t.Fatalf("version -o jsonpath: %q", got)
	}
	// A bad -o is refused before anything is done.
	if _, _, err := cli(t, url, "backup", "--out", filepath.Join(dir, "never.db"), "-o", "toml"); err == nil {
		t.Fatal("-o toml was accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "never.db")); err == nil {
		t.Fatal("backup ran under a refused -o")
	}
}

// Promoting the production version, clearing no canary and setting the same
// blend succeed, say "unchanged", and add nothing to the history.
func TestIdempotentVerbsSayUnchanged(t *testing.T) {
	url := mustPromoted(t)
	if _, _, err := cli(t, url, "blend", "calling-score", "0.5"); err != nil {
		t.Fatal(err)
	}
	before, _, _ := cli(t, url, "history", "-o", "json")
	for _, args := range [][]string{
		{"promote", "calling-score", "1"},
		{"promote", "calling-score", "v1", "--reason", "again"},
		{"canary", "calling-score", "--clear"},
		{"blend", "calling-score", "0.5"},
	} {
		out, _, err := cli(t, url, args...)
		if err != nil || !strings.Contains(out, "calling-score unchanged") {
			t.Errorf("modelctl %s: %q %v, want it to succeed as unchanged", strings.Join(args, " "), out, err)
		}
	}
	out, _, err := cli(t, url, "promote", "calling-score", "1", "-o", "json")
	var ev registry.Event
	if err != nil || json.Unmarshal([]byte(out), &ev) != nil || !ev.Unchanged || ev.Revision != 3 {
		t.Fatalf("promote -o json of production: %q %v", out, err)
	}
	if after, _, _ := cli(t, url, "history", "-o", "json"); after != before {
		t.Fatalf("the history changed:\n%s\nthen\n%s", before, after)
	}
}

// Contexts name control planes and their token files; flags and the
// environment still win; an error from a server names it.
func TestContexts(t *testing.T) {
	url := mustPromoted(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badToken := filepath.Join(dir, "bad.token")
	os.WriteFile(badToken, []byte(registry.NewTokenSecret()), 0o600)
	vars := map[string]string{"MODELCTL_CONFIG": filepath.Join(dir, "cfg", "config.yaml")}
	run := func(args ...string) (string, error) {
		t.Helper()
		out, _, err := cliEnv(t, vars, args...)
		return out, err
	}
	if _, err := run("config", "current-context"); err == nil || !strings.Contains(err.Error(), "no current context") {
		t.Fatalf("current-context with no config: %v", err)
	}
	if out, err := run("config", "set-context", "local", "--server", url, "--token-file", tokenFile); err != nil || !strings.Contains(out, `context "local" created`) {
		t.Fatalf("set-context: %q %v", out, err)
	}
	if _, err := run("config", "set-context", "stale", "--server", url, "--token-file", badToken); err != nil {
		t.Fatal(err)
	}
	// Bad input changes nothing.
	cfgBefore, _ := os.ReadFile(vars["MODELCTL_CONFIG"])
	for _, bad := range [][]string{
		{"config", "set-context", "x", "--server", "localhost:8080"},
		{"config", "set-context", "x", "--token-file", filepath.Join(dir, "absent")},
		{"config", "set-context", "y"},
		{"config", "use-context", "nope"},
		{"config", "delete-context", "nope"},
	} {
		if _, err := run(bad...); err == nil {
			t.Errorf("modelctl %s succeeded", strings.Join(bad, " "))
		}
	}
	if after, _ := os.ReadFile(vars["MODELCTL_CONFIG"]); !bytes.Equal(after, cfgBefore) {
		t.Fatalf("a refused command changed the config:\n%s", after)
	}
	if st, err := os.Stat(vars["MODELCTL_CONFIG"]); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v, want mode 0600", st, err)
	}
	if out, err := run("config", "use-context", "local"); err != nil || !strings.Contains(out, `switched to context "local"`) {
		t.Fatalf("use-context: %q %v", out, err)
	}
	if out, err := run("config", "current-context"); err != nil || out != "local\n" {
		t.Fatalf("current-context: %q %v", out, err)
	}
	if out, err := run("config", "get-contexts"); err != nil || !regexp.MustCompile(`(?m)^\* +local +`+regexp.QuoteMeta(url)).MatchString(out) || !strings.Contains(out, "stale") {
		t.Fatalf("get-contexts: %q %v", out, err)
	}
	// The current context reaches its server with its token.
	if out, err := run("list"); err != nil || !strings.Contains(out, "calling-score") {
		t.Fatalf("list through the context: %q %v", out, err)
	}
	// --context picks another for one command, and its server's refusal names it.
	if _, err := run("--context", "stale", "list"); err == nil || !strings.HasPrefix(err.Error(), url+": ") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("list with a context whose token is wrong: %v, want an error that starts with %s", err, url)
	}
	// MODELCTL_SERVER wins over the context; the context's token does not go
	// to that other server.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the context's token was sent to %s", r.Host)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"code":"unauthorized","message":"token is not valid"}}`))
	}))
	defer other.Close()
	vars["MODELCTL_SERVER"] = other.URL
	if _, err := run("list"); err == nil || err.Error() != other.URL+": token is not valid (HTTP 401 unauthorized)" {
		t.Fatalf("list with MODELCTL_SERVER set: %v", err)
	}
	// And --server wins over MODELCTL_SERVER; MODELCTL_TOKEN is sent anywhere.
	vars["MODELCTL_TOKEN"] = testToken
	if out, err := run("--server", url, "list", "-o", "jsonpath={[0].name}"); err != nil || out != "calling-score\n" {
		t.Fatalf("--server over MODELCTL_SERVER: %q %v", out, err)
	}
	delete(vars, "MODELCTL_SERVER")
	delete(vars, "MODELCTL_TOKEN")
	if out, err := run("config", "delete-context", "local"); err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("delete-context: %q %v", out, err)
	}
	if _, err := run("config", "current-context"); err == nil || !strings.Contains(err.Error(), "no current context") {
		t.Fatalf("current-context after deleting it: %v", err)
	}
	// A config file that is not one is named.
	os.WriteFile(vars["MODELCTL_CONFIG"], []byte("contexts: [oops"), 0o600)
	if _, err := run("list"); err == nil || !strings.Contains(err.Error(), vars["MODELCTL_CONFIG"]) {
		t.Fatalf("list with a damaged config: %v", err)
	}
}

// hostile is a control plane that answers with terminal escapes in every
// string it can: node names, load errors, token names, reasons, model names.
// A real control plane may refuse such names; the CLI must not trust that it
// did (an older one, or whatever answers at the URL).
func hostile(t *testing.T) string {
	const bad = "evil\x1b]0;pwned\x07\x1b[2J\u009b31m\u202etxt\tcol\nline"
	answers := map[string]any{
		"/api/v1/models": map[string]any{"models": []registry.Model{{Name: "m" + bad, Production: 1, Revision: 3}}},
		"/api/v1/fleet": map[string]any{"nodes": []map[string]any{{
			"node": "node" + bad, "ready": true, "last_report": time.Now(),
			"served":      []map[string]any{{"model": "m" + bad, "version": 1, "arm": "champion" + bad}},
			"load_errors": map[string]string{"m" + bad: "fetch failed" + bad},
		}}},
		"/api/v1/tokens": map[string]any{"tokens": []registry.Token{{ID: "id" + bad, Name: "name" + bad, Role: "viewer" + bad}}},
		"/api/v1/events": map[string]any{"events": []registry.Event{{Revision: 1, Model: "m" + bad, Kind: "promoted", Actor: "actor" + bad, Reason: "reason" + bad}}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if a, ok := answers[r.URL.Path]; ok {
			json.NewEncoder(w).Encode(a)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/health") {
			json.NewEncoder(w).Encode(monitor.ModelHealth{Model: "m" + bad, Window: "5m" + bad, Production: 1,
				Arms: []monitor.ArmHealth{{Version: 1, Arm: "champion" + bad, Requests: 10, Drift: "red" + bad}}})
			return
		}
		w.WriteHeader(http.StatusConflict)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "conflict", "message": "refused" + bad}})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// Strings that came over the network reach the terminal escaped: no ESC, no
// other control character, no forged line or column.
func TestNetworkStringsAreEscaped(t *testing.T) {
	url := hostile(t)
	for _, args := range [][]string{{"status"}, {"token", "list"}, {"list"}, {"history"}, {"list", "-o", "jsonpath={[*].name}"}} {
		out, _, err := cli(t, url, args...)
		if err != nil {
			t.Fatalf("modelctl %s: %v", strings.Join(args, " "), err)
		}
		if strings.ContainsAny(out, "\x1b\x07\u009b\u202e") || strings.Contains(out, "\tcol") || strings.Contains(out, "\nline") {
			t.Errorf("modelctl %s printed raw control characters: %q", strings.Join(args, " "), out)
		}
		if !strings.Contains(out, `evil\x1b]0;pwned\x07\x1b[2J\u009b31m\u202etxt\tcol\nline`) {
			t.Errorf("modelctl %s does not show the escapes visibly: %q", strings.Join(args, " "), out)
		}
	}
	// JSON output stays JSON: the encoder escapes, and the value parses back
	// as it was sent.
	out, _, err := cli(t, url, "token", "list", "-o", "json")
	var ts []registry.Token
	if err != nil || strings.ContainsAny(out, "\x1b\x07") || json.Unmarshal([]byte(out), &ts) != nil || !strings.Contains(ts[0].Name, "\x1b]0;pwned") {
		t.Fatalf("token list -o json: %q %v", out, err)
	}
	// So does YAML: the encoder quotes and escapes what is not printable.
	out, _, err = cli(t, url, "status", "-o", "yaml")
	var st struct {
		Fleet []monitor.NodeState `json:"fleet"`
	}
	if err != nil || strings.ContainsAny(out, "\x1b\x07\u009b") || yaml.Unmarshal([]byte(out), &st) != nil || len(st.Fleet) != 1 || !strings.Contains(st.Fleet[0].Node, "\x1b]0;pwned") {
		t.Fatalf("status -o yaml: %q %v", out, err)
	}
	// An error message from the server is escaped when printed.
	_, _, err = cli(t, url, "promote", "m", "1")
	if err == nil || strings.ContainsAny(escText(err.Error()), "\x1b\x07") || !strings.Contains(escText(err.Error()), `refused`+`evil\x1b`) {
		t.Fatalf("a server's error: %q", err)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain café ☕": "plain café ☕",
		"a\x1b[2Jb":    `a\x1b[2Jb`,
		"tab\there":    `tab\there`,
		"bell\x07":     `bell\x07`,
		"del\x7f":      `del\x7f`,
		"c1\u009b":     `c1\u009b`,
		"rtl\u202e":    `rtl\u202e`,
		"bad\xffutf8":  `bad\xffutf8`,
		"nl\nx":        `nl\nx`,
		"":             "",
	} {
		if got := esc(in); got != want {
			t.Errorf("esc(%q) = %q, want %q", in, got, want)
		}
	}
	if got := escText("line one\n\tDid you mean \x1b[31m?"); got != "line one\n\tDid you mean \\x1b[31m?" {
		t.Errorf("escText keeps lines and tabs only: %q", got)
	}
}

// syncBuffer is a bytes.Buffer the test reads while a verb writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// status --watch redraws every interval until its context ends (Ctrl-C),
// then exits 0; with -o json it prints one document per interval.
func TestStatusWatch(t *testing.T) {
	url := mustPromoted(t)
	for _, tc := range []struct {
		format string
		frames func(string) int
	}{
		{"table", func(s string) int { return strings.Count(s, "every 100ms: modelctl status") }},
		{"json", func(s string) int {
			n, dec := 0, json.NewDecoder(strings.NewReader(s))
			for {
				var v struct {
					Models []monitor.ModelHealth `json:"models"`
				}
				if dec.Decode(&v) != nil || len(v.Models) != 1 {
					return n
				}
				n++
			}
		}},
	} {
		var out syncBuffer
		e := &env{stdout: &out, stderr: &out, getenv: func(k string) string {
			return map[string]string{"MODELCTL_SERVER": url, "MODELCTL_TOKEN": testToken}[k]
		}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.run(ctx, []string{"status", "--watch", "--interval", "100ms", "-o", tc.format}) }()
		deadline := time.Now().Add(20 * time.Second)
		for tc.frames(out.String()) < 3 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("status --watch -o %s ended with %v", tc.format, err)
		}
		if n := tc.frames(out.String()); n < 3 {
			t.Fatalf("status --watch -o %s drew %d frames: %q", tc.format, n, out.String())
		}
		if !strings.Contains(out.String(), "calling-score") {
			t.Fatalf("status --watch -o %s: %q", tc.format, out.String())
		}
	}
	if _, _, err := cli(t, url, "status", "--watch", "--interval", "1ms"); err == nil || !strings.Contains(err.Error(), "want 100ms or more") {
		t.Fatalf("status --watch --interval 1ms: %v", err)
	}
}
