package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/modelops/modelops/internal/scorerapi"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

// chromiumPath finds Debian's chromium: $CHROMIUM, then PATH. A missing browser
// fails the test (CI installs it).
func chromiumPath(t *testing.T) string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium found: `apt-get install chromium` (.ci/run does) or set CHROMIUM")
	return ""
}

// browser starts a headless Chromium with a fresh profile and collects console
// errors and uncaught exceptions.
func browser(t *testing.T) (context.Context, *[]string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1280, 800))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelC := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	var mu sync.Mutex
	problems := &[]string{}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value))
				}
				*problems = append(*problems, "console.error: "+strings.Join(parts, " "))
			}
		case *runtime.EventExceptionThrown:
			*problems = append(*problems, "exception: "+e.ExceptionDetails.Text)
		}
	})
	return ctx, problems
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "testout", "dashboard")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// textOf reads the text of the first element sel matches, waiting up to 15 s
// for one with text, in one step: the page redraws every few seconds, and a
// node found by one command may be gone by the next.
func textOf(b context.Context, sel string) (string, error) {
	return chromedp.Run(b, chromedp.Poll[string](fmt.Sprintf(`(() => { const el = document.querySelector(%q); return el ? el.innerText : false; })()`, sel),
		chromedp.WithPollingTimeout(15*time.Second)))
}

func signIn(t *testing.T, ctx context.Context, url, token string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(url+"/"),
		chromedp.WaitVisible(chromedp.CSS("#signin #token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS(`#signin button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#signout")),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
}

func TestDashboardInARealBrowser(t *testing.T) {
	ctx := context.Background()
	cp, cl := fastMonitor(t)
	viewer, err := cl.CreateToken(ctx, "vera-viewer", registry.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	mustPush(t, cl, testutil.MustModel(t, 1))
	mustPush(t, cl, testutil.MustModel(t, 2))
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	// Two unrelated test models score far apart, and a loaded machine is slow:
	// keep the monitor from undoing the promotion this test makes.
	lenientPolicy(t, cl)
	sc := fastScorer(t, cp.URL())
	stop := make(chan struct{})
	wg := traffic(t, []string{sc.URL()}, stop)
	defer func() { close(stop); wg.Wait() }()
	// Until its histograms hold enough rows the drift is not graded yet; wait for
	// the grade, so that the table and the API below say the same.
	// The overview shows production's champion (the rules may have answered a few
	// requests before v1 loaded, under no version).
	production := func() *monitor.ArmHealth {
		h, err := cl.Health(ctx, "calling-score")
		if err != nil {
			return nil
		}
		for i, a := range h.Arms {
			if a.Version == 1 && a.Arm == scorerapi.ArmProduction {
				return &h.Arms[i]
			}
		}
		return nil
	}
	waitFor(t, "traffic in the monitor, enough to grade drift", 10*time.Second, func() bool {
		a := production()
		return a != nil && a.Drift != monitor.DriftTooFewRows
	})

	b, problems := browser(t)

	// Signed out: the page asks for a token and shows nothing else.
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/"), chromedp.WaitVisible(chromedp.CSS("#signin"))); err != nil {
		t.Fatal(err)
	}
	body, err := textOf(b, "main")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, "Sign in with a token") {
		t.Fatalf("signed-out page says %q", body)
	}

	// Admin: the overview shows what the API says.
	signIn(t, b, cp.URL(), adminToken)
	if err := chromedp.Do(b, chromedp.WaitVisible(chromedp.CSS(`#models tr[data-model="calling-score"]`))); err != nil {
		t.Fatal(err)
	}
	table, err := textOf(b, "#models")
	if err != nil {
		t.Fatal(err)
	}
	arm := production()
	if arm == nil {
		t.Fatal("the health API lost production's champion arm")
	}
	drift := arm.Drift
	if drift == "" {
		drift = "no reference"
	}
	if !strings.Contains(table, "calling-score") || !strings.Contains(table, "v1") || !strings.Contains(table, drift) {
		t.Fatalf("overview table %q does not show the API's model, production and drift", table)
	}
	screenshot(t, b, "overview")

	// Promote v2 through the UI, behind the confirmation.
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score")); err != nil {
		t.Fatal(err)
	}
	confirmText := openPromoteConfirmation(t, b, 2)
	err = chromedp.Do(b,
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.Poll[chromedp.Void](`document.querySelector("#production") && document.querySelector("#production").textContent === "v2"`, chromedp.WithPollingTimeout(15*time.Second)),
	)
	if err != nil {
		t.Fatalf("promote through the UI: %v", err)
	}
	if !strings.Contains(confirmText, "Promote calling-score v2") || !strings.Contains(confirmText, "now v1") {
		t.Fatalf("the confirmation says %q, want what will change", confirmText)
	}
	done, err := textOf(b, "#alert")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(done, "calling-score v2 is in production (was v1)") {
		t.Fatalf("after the promote the page says %q, want what changed, in the past", done)
	}
	// No request failed, so the error chart's top is 0, not the scale's 1.
	errChart, err := chromedp.Run(b, chromedp.Evaluate[string](`(() => {
		const c = [...document.querySelectorAll(".chart")].find((c) => c.querySelector("h3").textContent === "Error rate %");
		return c ? c.textContent : "no error chart";
	})()`))
	if err != nil || !strings.Contains(errChart, "max 0") || strings.Contains(errChart, "v0") {
		t.Fatalf("the error-rate chart reads %q (%v), want max 0", errChart, err)
	}
	m, _ := cl.Model(ctx, "calling-score")
	evs, _ := cl.Events(ctx, "calling-score", 0, 0)
	last := evs[len(evs)-1]
	if m.Production != 2 || last.Kind != registry.EventPromoted || last.Actor != "bootstrap-admin" {
		t.Fatalf("after the UI promote: production v%d, last event %+v; want v2 by the signed-in admin", m.Production, last)
	}
	if err := chromedp.Do(b, chromedp.WaitVisible(chromedp.CSS("#timeline"))); err != nil {
		t.Fatal(err)
	}
	timeline, err := textOf(b, "#timeline")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(timeline, "promoted") || !strings.Contains(timeline, "bootstrap-admin") {
		t.Fatalf("history timeline %q lacks the promotion and its actor", timeline)
	}
	screenshot(t, b, "model")
	// The node reports once a second: wait until it says it serves v2, so the
	// page and the API below describe the same moment.
	waitFor(t, "the node to report v2", 20*time.Second, func() bool {
		fleet, err := cl.Fleet(ctx)
		return err == nil && len(fleet) == 1 && len(fleet[0].Served) == 1 && fleet[0].Served[0].Served.Version == 2
	})
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/fleet"), chromedp.WaitVisible(chromedp.CSS("#nodes"))); err != nil {
		t.Fatal(err)
	}
	// The promote's banner belongs to the model page it was made on.
	if err := chromedp.Do(b, chromedp.Poll[chromedp.Void](`document.getElementById("alert").hidden`, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		text, _ := textOf(b, "#alert")
		t.Fatalf("the fleet page still shows %q from the model page: %v", text, err)
	}
	nodes, err := textOf(b, "#nodes")
	if err != nil {
		t.Fatal(err)
	}
	fleet, _ := cl.Fleet(ctx)
	if len(fleet) != 1 || !strings.Contains(nodes, fleet[0].Node) || !strings.Contains(nodes, "ready") || !strings.Contains(nodes, "calling-score v2") {
		t.Fatalf("fleet page %q does not show the API's node %+v", nodes, fleet)
	}
	screenshot(t, b, "fleet")

	// A narrow phone screen still shows the page.
	if err := chromedp.Do(b, chromedp.EmulateViewport(390, 844), chromedp.Navigate(cp.URL()+"/#/"), chromedp.WaitVisible(chromedp.CSS("#models"))); err != nil {
		t.Fatal(err)
	}
	screenshot(t, b, "overview-phone")
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}

	// A viewer sees everything but cannot act; the server refuses it anyway.
	v, vproblems := browser(t)
	signIn(t, v, cp.URL(), viewer.Secret)
	if err := chromedp.Do(v, chromedp.Navigate(cp.URL()+"/#/model/calling-score"), chromedp.WaitVisible(chromedp.CSS("#viewer-note"))); err != nil {
		t.Fatalf("viewer: %v", err)
	}
	disabled, err := chromedp.Run(v, chromedp.Evaluate[bool](`Array.from(document.querySelectorAll("button.promote, #set-canary, #rollback, #set-blend, #save-policy, #blend, #settings input")).every(b => b.disabled)`))
	if err != nil {
		t.Fatal(err)
	}
	status, err := chromedp.Run(v, chromedp.Evaluate[int](fmt.Sprintf(`fetch("/ui/session").then(r => r.json()).then(s => fetch("/api/v1/models/calling-score/promote", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": s.csrf}, body: JSON.stringify({version: %d})})).then(r => r.status)`, 1), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if !disabled || status != 403 {
		t.Fatalf("viewer: buttons disabled %v, direct promote answered %d; want disabled and 403", disabled, status)
	}
	screenshot(t, v, "model-viewer")
	if m, _ := cl.Model(ctx, "calling-score"); m.Production != 2 {
		evs, _ := cl.Events(ctx, "calling-score", 0, 0)
		t.Fatalf("production moved to v%d while a viewer looked; events: %+v", m.Production, evs)
	}
	if len(*vproblems) > 0 {
		t.Fatalf("browser console (viewer): %v", *vproblems)
	}
}

func TestDashboardCSRFAndEmptyState(t *testing.T) {
	cp, cl := fastMonitor(t)
	_ = cl
	b, problems := browser(t)
	signIn(t, b, cp.URL(), adminToken)
	if err := chromedp.Do(b, chromedp.WaitVisible(chromedp.CSS("#empty"))); err != nil {
		t.Fatal(err)
	}
	empty, err := textOf(b, "#empty")
	if err != nil {
		t.Fatal(err)
	}
	// The session cookie alone does not authorise a change: the CSRF header must match.
	status, err := chromedp.Run(b, chromedp.Evaluate[int](`fetch("/api/v1/gc", {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(empty, "modelctl push") {
		t.Fatalf("empty state %q does not say what to do next", empty)
	}
	if status != 403 {
		t.Fatalf("a change without the CSRF token answered %d, want 403", status)
	}
	screenshot(t, b, "empty")
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// A control plane without auth says so in the header, where a signed-in one
// names the user, and offers no sign-out that would sign no one out.
func TestDashboardSaysWhenThereIsNoAuth(t *testing.T) {
	cp := noAuthControlPlane(t, filepath.Join(t.TempDir(), "data"), "127.0.0.1:0")
	b, problems := browser(t)
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/"), chromedp.WaitVisible(chromedp.CSS("#no-auth")), chromedp.WaitVisible(chromedp.CSS("#empty"))); err != nil {
		t.Fatal(err)
	}
	who, err := textOf(b, "#who")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(who, "--insecure-no-auth") || strings.Contains(who, "Sign out") {
		t.Fatalf("the header says %q, want the no-auth warning and no sign-out", who)
	}
	screenshot(t, b, "no-auth")
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// noAuthControlPlane starts a control plane without tokens over data at listen,
// closed when the test ends.
func noAuthControlPlane(t *testing.T, data, listen string) *app.ControlPlane {
	t.Helper()
	cfg := app.DefaultControlPlaneConfig()
	cfg.DataDir, cfg.Listen, cfg.NoAuth = data, listen, true
	cp := app.NewControlPlane(cfg, quietLogger(t))
	if err := cp.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close(context.Background()) })
	return cp
}

// A page that failed to load (the control plane restarting) says so, and the
// banner goes by itself once the page loads again.
func TestDashboardDropsALoadErrorOnceThePageLoads(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cp := noAuthControlPlane(t, data, "127.0.0.1:0")
	b, _ := browser(t)
	// The header's marker says whether the watch stream keeps the page current.
	liveMarker := func(state string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelector("header #live").dataset.state === %q`, state), chromedp.WithPollingTimeout(20*time.Second))
	}
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/"), chromedp.WaitVisible(chromedp.CSS("#empty")), liveMarker("live")); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(cp.URL(), "http://")
	cp.Close(context.Background())
	if err := chromedp.Do(b, liveMarker("reconnecting")); err != nil {
		t.Fatalf("the live marker does not say the stream is lost: %v", err)
	}
	// The page refreshes every 5 s.
	if err := chromedp.Do(b, chromedp.Poll[chromedp.Void](`!document.getElementById("alert").hidden && document.getElementById("alert").textContent.startsWith("Could not load the page")`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("no load error while the control plane was down: %v", err)
	}
	noAuthControlPlane(t, data, addr)
	if err := chromedp.Do(b, chromedp.Poll[chromedp.Void](`document.getElementById("alert").hidden && !!document.getElementById("empty")`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		text, _ := textOf(b, "#alert")
		t.Fatalf("the load error stayed after the control plane came back: %q (%v)", text, err)
	}
	if err := chromedp.Do(b, liveMarker("live")); err != nil {
		t.Fatalf("the live marker does not say the stream is back: %v", err)
	}
}

// The model page refreshes every few seconds; what an admin chose in the
// canary controls survives it, and a field being typed in is not replaced.
func TestDashboardKeepsTheCanaryControlsThroughRefreshes(t *testing.T) {
	ctx := context.Background()
	cp, cl := noAuthWithVersions(t, 3)
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	b, problems := browser(t)
	// Choose v2, 37%, shadow; then leave the fields, and mark the page so a
	// refresh shows.
	err := chromedp.Do(b,
		chromedp.Navigate(cp.URL()+"/#/model/calling-score"),
		chromedp.WaitVisible(chromedp.CSS("#canary-traffic")),
		chromedp.Evaluate[chromedp.Void](`(() => {
			const set = (id, v, ev) => { const el = document.getElementById(id); el.value = v; el.dispatchEvent(new Event(ev)); };
			set("canary-version", "2", "change");
			set("canary-traffic", "37", "input");
			set("canary-mode", "shadow", "change");
			document.activeElement.blur();
			document.getElementById("canary-traffic").dataset.old = "1";
		})()`),
		chromedp.Poll[chromedp.Void](`!document.getElementById("canary-traffic").dataset.old`, chromedp.WithPollingTimeout(15*time.Second)),
	)
	if err != nil {
		t.Fatalf("choose in the canary controls and wait for a refresh: %v", err)
	}
	got, err := chromedp.Run(b, chromedp.Evaluate[string](`["canary-version", "canary-traffic", "canary-mode"].map((id) => document.getElementById(id).value).join(" ")`))
	if err != nil || got != "2 37 shadow" {
		t.Fatalf("after a refresh the canary controls read %q (%v), want the choice 2 37 shadow", got, err)
	}
	// While a field has the focus the page is not redrawn under it.
	if err := chromedp.Do(b, chromedp.Evaluate[chromedp.Void](`(() => { const el = document.getElementById("canary-traffic"); el.focus(); el.dataset.old = "1"; })()`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second) // longer than the page's refresh
	kept, err := chromedp.Run(b, chromedp.Evaluate[bool](`document.getElementById("canary-traffic").dataset.old === "1" && document.activeElement.id === "canary-traffic"`))
	if err != nil || !kept {
		t.Fatalf("the traffic field was replaced while it had the focus (%v)", err)
	}
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// The drift heatmap does not colour a PSI taken over a handful of rows as drift
// (five requests read PSI 8 and would be all red): such cells are grey and say
// why.
func TestDashboardHeatmapGreysTooFewRows(t *testing.T) {
	ctx := context.Background()
	cp, cl := fastMonitor(t)
	card, err := os.ReadFile("../../models/calling_score/card.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: "../../models/calling_score/model.onnx", Card: card}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	sc := fastScorer(t, cp.URL())
	hc := &http.Client{Timeout: 10 * time.Second}
	waitFor(t, "v1", 10*time.Second, func() bool { return score(hc, sc.URL(), testutil.Row(0.5)).resp.Version == 1 })
	for range 5 {
		score(hc, sc.URL(), testutil.Row(0.5))
	}
	waitFor(t, "a graded-too-few drift in the health", 10*time.Second, func() bool {
		h, err := cl.Health(ctx, "calling-score")
		return err == nil && len(h.Arms) > 0 && h.Arms[0].Drift == monitor.DriftTooFewRows
	})
	b, problems := browser(t)
	signIn(t, b, cp.URL(), adminToken)
	err = chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score"),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll(".heat .cell").length > 0`, chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		t.Fatalf("no heatmap: %v", err)
	}
	red, err := chromedp.Run(b, chromedp.Evaluate[int](`[...document.querySelectorAll(".heat .cell")].filter((c) => c.style.background.includes("207, 34, 46")).length`))
	if err != nil || red != 0 {
		t.Fatalf("%d heatmap cells red over five requests (%v), want none", red, err)
	}
	title, err := chromedp.Run(b, chromedp.Evaluate[string](`document.querySelector(".heat .cell.few").title`))
	if err != nil || !strings.Contains(title, "too few rows") {
		t.Fatalf("a grey cell's title %q (%v), want it to say why", title, err)
	}
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// openPromoteConfirmation clicks a version's Promote button on the model page
// and returns what the confirmation says. The page re-renders every few
// seconds, so the button is found and clicked in one step: a node found by one
// command may be gone by the next.
func openPromoteConfirmation(t *testing.T, b context.Context, version int) string {
	t.Helper()
	err := chromedp.Do(b,
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`(() => {
			const b = document.querySelector('#versions button.promote[data-version="%d"]');
			if (!b || b.disabled) return false;
			b.click();
			return true;
		})()`, version), chromedp.WithPollingTimeout(15*time.Second)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
	)
	if err != nil {
		t.Fatalf("open the promote confirmation: %v", err)
	}
	text, err := textOf(b, "#confirm-text")
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// noAuthWithVersions is a control plane without tokens holding calling-score
// v1…vn (trained with seeds 1…n), none promoted.
func noAuthWithVersions(t *testing.T, n uint64) (*app.ControlPlane, *client.Client) {
	t.Helper()
	cp := noAuthControlPlane(t, filepath.Join(t.TempDir(), "data"), "127.0.0.1:0")
	cl := adminClient(cp.URL())
	for seed := uint64(1); seed <= n; seed++ {
		mustPush(t, cl, testutil.MustModel(t, seed))
	}
	return cp, cl
}

// The model page shows the model's latest events, however long its history:
// it asked for the first 10,000 and so, past them, showed none of the new ones.
func TestDashboardShowsTheLatestHistory(t *testing.T) {
	ctx := context.Background()
	cp, cl := noAuthWithVersions(t, 1)
	for i := range 210 {
		w := float64(i%10) / 10
		if _, err := cl.SetBlend(ctx, "calling-score", wire.BlendBody{Weight: &w, Reason: fmt.Sprintf("step %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	b, problems := browser(t)
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score"), chromedp.WaitVisible(chromedp.CSS("#timeline-more"))); err != nil {
		t.Fatalf("the model page with 211 events: %v", err)
	}
	got, err := chromedp.Run(b, chromedp.Evaluate[[]string](`(() => { const li = document.querySelectorAll("#timeline li"); return [String(li.length), li[0].textContent, li[li.length - 1].textContent]; })()`))
	if err != nil || len(got) != 3 {
		t.Fatalf("timeline: %v %v", got, err)
	}
	// Newest first: step 209 (revision 211) down to step 10 (revision 12).
	if got[0] != "200" || !strings.Contains(got[1], "step 209") || !strings.Contains(got[1], "rev 211") || !strings.Contains(got[2], "step 10") {
		t.Fatalf("the timeline holds %s events, first %q, last %q; want the latest 200, newest first", got[0], got[1], got[2])
	}
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// The fleet page says why a node does not serve what it was asked to, and when
// a node has fallen silent.
func TestDashboardFleetShowsWhyANodeCannotLoad(t *testing.T) {
	cp, _ := noAuthWithVersions(t, 1)
	report, _ := json.Marshal(report.Report{Node: "n1", Address: "http://127.0.0.1:1", Ready: true, Interval: 0.2, Models: []report.ModelReport{{
		Model: "calling-score", Served: []report.Served{{Arm: "champion", Version: 1, Digest: "ab"}}, LoadError: "fetch v2: blob not found"}}})
	resp, err := http.Post(cp.URL()+"/api/v1/reports", "application/json", bytes.NewReader(report))
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("report: %v %v", resp, err)
	}
	resp.Body.Close()
	b, problems := browser(t)
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/fleet"), chromedp.WaitVisible(chromedp.CSS("#nodes .load-error"))); err != nil {
		t.Fatalf("the fleet page shows no load error: %v", err)
	}
	text, err := textOf(b, "#nodes .load-error")
	if err != nil || !strings.Contains(text, "cannot load") || !strings.Contains(text, "calling-score: fetch v2: blob not found") {
		t.Fatalf("the node's load error reads %q (%v)", text, err)
	}
	// The overview warns of it beside the model's production version.
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/"), chromedp.WaitVisible(chromedp.CSS(`#models tr[data-model="calling-score"] .unserved`))); err != nil {
		t.Fatalf("the overview does not warn of a node that cannot load: %v", err)
	}
	warn, err := textOf(b, `#models tr[data-model="calling-score"] .unserved`)
	if err != nil || !strings.Contains(warn, "1 node cannot load its deployment") {
		t.Fatalf("the overview's warning reads %q (%v)", warn, err)
	}
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/fleet"), chromedp.WaitVisible(chromedp.CSS("#nodes .load-error"))); err != nil {
		t.Fatal(err)
	}
	// The node said it reports every 0.2 s and then fell silent: its "ready" is
	// stale, and the page says so on its next refresh.
	if err := chromedp.Do(b, chromedp.Poll[chromedp.Void](`[...document.querySelectorAll("#nodes .badge")].some((b) => b.textContent === "silent")`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("a node silent for seconds is not marked silent: %v", err)
	}
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// The canary controls do not offer a version the monitor rejected (the control
// plane would refuse it as a canary), and promoting one says it overrides the
// monitor.
func TestDashboardIsPlainAboutARejectedVersion(t *testing.T) {
	ctx := context.Background()
	cp, cl := noAuthWithVersions(t, 3)
	for v := 1; v <= 3; v++ {
		if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.SetCanary(ctx, "calling-score", wire.CanaryBody{Version: 2, Traffic: 10, Mode: "ab"}); err != nil {
		t.Fatal(err)
	}
	// As the monitor does when the challenger fails.
	if _, err := cp.Registry.AutoRollback(ctx, registry.Decision{Model: "calling-score", Version: 2, Candidate: true, Reason: "error rate 0.5"}); err != nil {
		t.Fatal(err)
	}
	b, problems := browser(t)
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score"), chromedp.WaitVisible(chromedp.CSS("#canary-version"))); err != nil {
		t.Fatal(err)
	}
	offered, err := chromedp.Run(b, chromedp.Evaluate[string](`[...document.querySelectorAll("#canary-version option")].map((o) => o.textContent).join(" ")`))
	if err != nil || offered != "v1" {
		t.Fatalf("the canary versions offered: %q (%v), want only v1 (v3 is production, v2 rejected)", offered, err)
	}
	// A rollback passes over the rejected v2, and its confirmation says where it goes.
	err = chromedp.Do(b, chromedp.Click(chromedp.CSS("#rollback")), chromedp.WaitVisible(chromedp.CSS("#confirm-ok")))
	if err != nil {
		t.Fatalf("open the rollback confirmation: %v", err)
	}
	confirm, err := textOf(b, "#confirm-text")
	if err != nil || !strings.Contains(confirm, "from v3 to v1, the previous good production version") {
		t.Fatalf("the rollback confirmation reads %q (%v)", confirm, err)
	}
	if err := chromedp.Do(b, chromedp.Click(chromedp.CSS("#confirm-cancel")), chromedp.WaitNotVisible(chromedp.CSS("#confirm-ok"))); err != nil {
		t.Fatal(err)
	}
	// Promoting it overrides the monitor, and the confirmation says so and why.
	if confirm = openPromoteConfirmation(t, b, 2); !strings.Contains(confirm, "The monitor rejected v2 (error rate 0.5); promoting it overrides that") {
		t.Fatalf("the confirmation to promote the rejected v2 reads %q", confirm)
	}
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// With many versions the model page lists the latest and whatever production
// holds, says so, and fetches each version's card once, not on every refresh.
func TestDashboardVersionsPastTheLatest(t *testing.T) {
	ctx := context.Background()
	cp, cl := noAuthWithVersions(t, 23)
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	b, problems := browser(t)
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score"), chromedp.WaitVisible(chromedp.CSS("#versions-more"))); err != nil {
		t.Fatalf("the model page with 23 versions: %v", err)
	}
	rows, err := chromedp.Run(b, chromedp.Evaluate[string](`[...document.querySelectorAll("#versions tbody tr")].map((r) => r.dataset.version).join(" ")`))
	want := "23 22 21 20 19 18 17 16 15 14 13 12 11 10 9 8 7 6 5 4 1"
	if err != nil || rows != want {
		t.Fatalf("versions listed: %q (%v), want %q: the latest 20 and production's v1", rows, err, want)
	}
	cardFetches := `performance.getEntriesByType("resource").filter((e) => /\/versions\/[0-9]+$/.test(e.name)).length`
	before, err := chromedp.Run(b, chromedp.Evaluate[int](cardFetches))
	if err != nil || before != 21 {
		t.Fatalf("%d card fetches for 21 versions (%v)", before, err)
	}
	// Two refreshes, as the page makes every few seconds.
	if err := chromedp.Do(b, chromedp.Evaluate[chromedp.Void](`route().then(() => route()).then(() => { document.body.dataset.refreshed = "1"; })`),
		chromedp.Poll[chromedp.Void](`document.body.dataset.refreshed === "1"`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatal(err)
	}
	if after, err := chromedp.Run(b, chromedp.Evaluate[int](cardFetches)); err != nil || after != before {
		t.Fatalf("card fetches went from %d to %d over two refreshes (%v): cards are immutable", before, after, err)
	}
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// fastMonitorKeeping is fastMonitor whose monitor keeps retain of reports for
// the charts (0: the monitor's default).
func fastMonitorKeeping(t *testing.T, retain time.Duration) (*app.ControlPlane, *client.Client) {
	t.Helper()
	cfg := app.DefaultControlPlaneConfig()
	cfg.DataDir, cfg.Listen = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0"
	cfg.MonitorWindow, cfg.EvalInterval, cfg.MonitorRetain = 3*time.Second, 100*time.Millisecond, retain
	cfg.AdminToken = adminToken
	cp := app.NewControlPlane(cfg, quietLogger(t))
	if err := cp.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close(context.Background()) })
	addScorerToken(t, cp)
	return cp, adminClient(cp.URL())
}

// lenientPolicy keeps the monitor from rolling back what a test promotes: two
// unrelated test models score far apart, and a loaded machine is slow.
func lenientPolicy(t *testing.T, cl *client.Client) {
	t.Helper()
	if _, err := cl.SetPolicy(context.Background(), "calling-score", wire.PolicyBody{MaxPredPSI: ptr(1000.0), MaxP99Ms: ptr(60000.0),
		MaxErrorRate: ptr(1.0), MaxFallbackRate: ptr(1.0)}); err != nil {
		t.Fatal(err)
	}
}

// The charts have a time axis over the chosen window, show values under the
// pointer, leave a gap where a version served nothing (not a zero), and mark
// promotions and canary changes on the time line.
func TestDashboardChartsOverAWindowWithMarkers(t *testing.T) {
	ctx := context.Background()
	cp, cl := fastMonitorKeeping(t, 0) // the default: 24 hours
	mustPush(t, cl, testutil.MustModel(t, 1))
	mustPush(t, cl, testutil.MustModel(t, 2))
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	lenientPolicy(t, cl)
	sc := fastScorer(t, cp.URL())
	stop := make(chan struct{})
	wg := traffic(t, []string{sc.URL()}, stop)
	waitFor(t, "v1's traffic in the monitor", 15*time.Second, func() bool {
		h, err := cl.Health(ctx, "calling-score")
		if err != nil {
			return false
		}
		for _, a := range h.Arms {
			if a.Version == 1 && a.Requests > 50 {
				return true
			}
		}
		return false
	})
	close(stop)
	wg.Wait()
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetCanary(ctx, "calling-score", wire.CanaryBody{Version: 1, Traffic: 10, Mode: "ab"}); err != nil {
		t.Fatal(err)
	}

	b, problems := browser(t)
	signIn(t, b, cp.URL(), adminToken)
	allMarked := `(() => { const c = document.querySelector("#charts .chart"); return !!c && c.dataset.markers === "3"; })()`
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score"), chromedp.Poll[chromedp.Void](allMarked, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		n, _ := chromedp.Run(b, chromedp.Evaluate[string](`String(document.querySelector("#charts .chart") && document.querySelector("#charts .chart").dataset.markers)`))
		t.Fatalf("the charts do not mark v1's and v2's promotions and the canary (markers %s): %v", n, err)
	}
	kinds, err := chromedp.Run(b, chromedp.Evaluate[string](`[...document.querySelectorAll("#markers li")].map((l) => l.dataset.kind).join(" ")`))
	if err != nil || kinds != "promoted promoted canary_set" {
		t.Fatalf("the markers listed: %q (%v), want promoted promoted canary_set", kinds, err)
	}
	// The requests chart over 15 minutes: a time axis whose labels read as
	// times, and v1's line null (a gap) in every step without its requests.
	type chartState struct {
		Charts int      `json:"charts"`
		Span   float64  `json:"span"`
		Ticks  string   `json:"ticks"`
		Labels []string `json:"labels"`
		Nulls  int      `json:"nulls"`
		Zeros  int      `json:"zeros"`
		Values int      `json:"values"`
		Hover  string   `json:"hover"`
		Want   string   `json:"want"`
		Time   string   `json:"time"`
	}
	read := `new Promise((resolve) => {
		const u = charts[0];
		const i = u.series.findIndex((s) => s.label === "v1 production");
		const ys = i > 0 ? u.data[i] : [];
		const last = ys.findLastIndex((v) => v !== null);
		const out = { charts: charts.length, span: u.scales.x.max - u.scales.x.min, ticks: u.root.closest(".chart").dataset.ticks || "",
			labels: u.series.map((s) => s.label), nulls: ys.filter((v) => v === null).length, zeros: ys.filter((v) => v === 0).length,
			values: ys.filter((v) => v !== null).length, want: last >= 0 ? String(Math.round(ys[last] * 1000) / 1000) : "" };
		if (last < 0) { resolve(out); return; }
		// Point at v1's last value, as a mouse would.
		const over = u.root.querySelector(".u-over"), r = over.getBoundingClientRect();
		over.dispatchEvent(new MouseEvent("mousemove", { bubbles: true, clientX: r.left + u.valToPos(u.data[0][last], "x"), clientY: r.top + u.valToPos(ys[last], "y") }));
		// A timer, not an animation frame: a tab in the background gets none.
		setTimeout(() => {
			try {
				const rows = u.root.querySelectorAll(".u-legend .u-series");
				out.time = rows[0].querySelector(".u-value").textContent;
				out.hover = rows[i].querySelector(".u-value").textContent;
			} catch (e) {
				out.hover = "legend: " + e.message + " connected=" + u.root.isConnected + " legends=" + document.querySelectorAll(".u-legend").length + " inroot=" + u.root.querySelectorAll(".u-legend").length + " rows=" + u.root.querySelectorAll(".u-legend tr").length;
			}
			resolve(out);
		}, 50);
	})`
	// The page redraws every 5 s; a redraw between the pointer's move and the
	// reading takes the legend away, and the reading is made again.
	var got chartState
	for range 5 {
		var err error
		if got, err = chromedp.Run(b, chromedp.Evaluate[chartState](read, chromedp.EvalAwaitPromise)); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got.Hover, "legend: ") {
			break
		}
	}
	if got.Charts != 5 || got.Span < 14*60 || got.Span > 16*60 || !regexp.MustCompile(`\d{1,2}:\d{2}`).MatchString(got.Ticks) {
		t.Fatalf("charts %+v: want 5 charts over 15 minutes with times on the axis", got)
	}
	if got.Values == 0 || got.Nulls == 0 || got.Zeros != 0 {
		t.Fatalf("v1's requests line (series %v) has %d values, %d nulls and %d zeros: want values, and gaps as nulls, never zeros", got.Labels, got.Values, got.Nulls, got.Zeros)
	}
	if got.Hover != got.Want || got.Time == "-" || got.Time == "" {
		t.Fatalf("under the pointer the legend reads %q at %q, want v1's value %q at a time", got.Hover, got.Time, got.Want)
	}
	screenshot(t, b, "charts")

	// The window goes to 24 hours: the monitor keeps that long by default.
	err = chromedp.Do(b, chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById("window"); s.value = "24h"; s.dispatchEvent(new Event("change")); })()`),
		chromedp.Poll[chromedp.Void](`charts.length === 5 && charts[0].scales.x.max - charts[0].scales.x.min > 23 * 3600 && document.querySelector("#charts .chart").dataset.markers === "3"`, chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("the charts over 24 hours: %v", err)
	}
	asked, err := chromedp.Run(b, chromedp.Evaluate[bool](`performance.getEntriesByType("resource").some((e) => e.name.includes("/series?window=24h&step=960s"))`))
	if err != nil || !asked {
		t.Fatalf("the 24-hour charts did not ask the control plane for 24 hours (%v)", err)
	}
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// A version's page, reached from the versions table, shows its card, data
// summary, metrics, golden inputs, who pushed it and its history, and can
// promote it behind the confirmation.
func TestDashboardVersionPage(t *testing.T) {
	ctx := context.Background()
	cp := noAuthControlPlane(t, filepath.Join(t.TempDir(), "data"), "127.0.0.1:0")
	cl := adminClient(cp.URL())
	cardJSON, err := os.ReadFile("../../models/calling_score/card.json")
	if err != nil {
		t.Fatal(err)
	}
	var card struct {
		Data struct {
			Rows     int            `json:"rows"`
			Features map[string]any `json:"features"`
		} `json:"data"`
		Metrics map[string]map[string]float64 `json:"metrics"`
		Golden  []any                         `json:"golden"`
	}
	if err := json.Unmarshal(cardJSON, &card); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: "../../models/calling_score/model.onnx", Card: cardJSON,
		Reason: "the shipped model, <b>retrained</b> on 10,000 rows"}); err != nil {
		t.Fatal(err)
	}
	mustPush(t, cl, testutil.MustModel(t, 2))
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1, Reason: "first release"}); err != nil {
		t.Fatal(err)
	}
	b, problems := browser(t)
	err = chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score"),
		chromedp.Poll[chromedp.Void](`(() => { const a = document.querySelector('#versions tr[data-version="1"] a.version-link'); if (!a) return false; a.click(); return true; })()`, chromedp.WithPollingTimeout(15*time.Second)),
		chromedp.WaitVisible(chromedp.CSS("#version-summary")))
	if err != nil {
		t.Fatalf("open v1's page from the versions table: %v", err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := textOf(b, sel)
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return s
	}
	v1, err := cl.Version(ctx, "calling-score", 1)
	if err != nil {
		t.Fatal(err)
	}
	if s := text("h1"); s != "calling-score v1" {
		t.Fatalf("the version page's title is %q", s)
	}
	if s := text("#pushed-by"); !strings.Contains(s, "Pushed by "+v1.Actor) || !strings.Contains(s, v1.Digest[:12]) || !strings.Contains(s, strconv.FormatInt(v1.Size, 10)+" bytes") ||
		!strings.Contains(s, "why: the shipped model, <b>retrained</b> on 10,000 rows") {
		t.Fatalf("who pushed v1 reads %q, want %s, why (as text), its digest and size", s, v1.Actor)
	}
	if s := text("#data-rows"); !strings.Contains(s, fmt.Sprintf("%d training rows", card.Data.Rows)) {
		t.Fatalf("the data summary says %q, want the card's %d rows", s, card.Data.Rows)
	}
	counts, err := chromedp.Run(b, chromedp.Evaluate[[]int](`[document.querySelectorAll("#data-summary tbody tr").length, document.querySelectorAll("#golden tbody tr").length]`))
	if err != nil || counts[0] != len(card.Data.Features) || counts[1] != min(len(card.Golden), 10) {
		t.Fatalf("data summary and golden rows %v (%v), want %d features and %d golden inputs", counts, err, len(card.Data.Features), min(len(card.Golden), 10))
	}
	if s := text("#golden caption"); !strings.Contains(s, fmt.Sprintf("%d golden input", len(card.Golden))) {
		t.Fatalf("the golden inputs say %q", s)
	}
	want := fmt.Sprintf("MSE of the model, card's test set\t%.5f", card.Metrics["test_model"]["mse"])
	if s := text("#version-metrics"); !strings.Contains(s, want) {
		t.Fatalf("v1's metrics read %q, want %q", s, want)
	}
	if s := text("#card-training"); !strings.Contains(s, "seed") {
		t.Fatalf("the card's training section reads %q", s)
	}
	if s := text("#version-history"); !strings.Contains(s, "pushed") || !strings.Contains(s, "promoted") || !strings.Contains(s, "first release") {
		t.Fatalf("v1's history reads %q, want its push and its promotion with the reason", s)
	}
	screenshot(t, b, "version")

	// v2's page promotes it, behind the confirmation.
	err = chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score/version/2"),
		chromedp.Poll[chromedp.Void](`(() => { const b = document.getElementById("version-promote"); if (!b || b.disabled || document.querySelector("h1").textContent !== "calling-score v2") return false; b.click(); return true; })()`, chromedp.WithPollingTimeout(15*time.Second)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")))
	if err != nil {
		t.Fatalf("open v2's promote confirmation: %v", err)
	}
	if s := text("#confirm-text"); !strings.Contains(s, "Promote calling-score v2 to production (now v1)") {
		t.Fatalf("the confirmation reads %q", s)
	}
	if err := chromedp.Do(b, chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.Poll[chromedp.Void](`[...document.querySelectorAll("#version-summary .badge")].some((b) => b.textContent === "production")`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("v2's page after its promotion: %v", err)
	}
	if m, _ := cl.Model(ctx, "calling-score"); m.Production != 2 {
		t.Fatalf("production is v%d after promoting v2 from its page", m.Production)
	}
	// A version that does not exist is a page with nothing to act on.
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score/version/9"), chromedp.WaitVisible(chromedp.CSS("#unknown"))); err != nil {
		t.Fatal(err)
	}
	if n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("#main button").length`)); err != nil || n != 0 {
		t.Fatalf("the page of a missing version has %d buttons (%v)", n, err)
	}
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// An unknown model's page is empty: the previous model's buttons do not stay
// live under it, and the refresh does not bring them back.
func TestDashboardUnknownModelHasNoActions(t *testing.T) {
	cp, cl := noAuthWithVersions(t, 2)
	if _, err := cl.Promote(context.Background(), "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	b, problems := browser(t)
	err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score"), chromedp.WaitVisible(chromedp.CSS("#rollback")),
		chromedp.Evaluate[chromedp.Void](`location.hash = "#/model/no-such-model"`), chromedp.WaitVisible(chromedp.CSS("#unknown")))
	if err != nil {
		t.Fatalf("an unknown model's page: %v", err)
	}
	check := func() {
		t.Helper()
		got, err := chromedp.Run(b, chromedp.Evaluate[[]string](`[document.querySelector("h1").textContent, document.getElementById("unknown").textContent, String(document.querySelectorAll("#main button, #main select, #main input").length)]`))
		if err != nil || len(got) != 3 || got[0] != "no-such-model" || !strings.Contains(got[1], "There is no model named no-such-model") || got[2] != "0" {
			t.Fatalf("the unknown model's page: %q (%v), want its name, no such model, and no controls", got, err)
		}
	}
	check()
	// A refresh (every 5 s) draws the same empty page.
	if err := chromedp.Do(b, chromedp.Evaluate[chromedp.Void](`route().then(() => { document.body.dataset.refreshed = "1"; })`),
		chromedp.Poll[chromedp.Void](`document.body.dataset.refreshed === "1"`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatal(err)
	}
	check()
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// Two versions compared on production's traffic over the same window, with the
// shadow canary's differences and the cards' test metrics labelled as such; a
// promotion is made from the comparison, behind the confirmation.
func TestDashboardComparesTwoVersionsAndPromotes(t *testing.T) {
	ctx := context.Background()
	cp, cl := fastMonitor(t)
	mustPush(t, cl, testutil.MustModel(t, 1))
	mustPush(t, cl, testutil.MustModel(t, 2))
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	lenientPolicy(t, cl)
	if _, err := cl.SetCanary(ctx, "calling-score", wire.CanaryBody{Version: 2, Traffic: 50, Mode: "shadow"}); err != nil {
		t.Fatal(err)
	}
	sc := fastScorer(t, cp.URL())
	stop := make(chan struct{})
	wg := traffic(t, []string{sc.URL()}, stop)
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, "v2's shadow rows in the monitor", 20*time.Second, func() bool {
		h, err := cl.Health(ctx, "calling-score")
		if err != nil {
			return false
		}
		for _, a := range h.Arms {
			if a.Version == 2 && a.ShadowRows > 0 {
				return true
			}
		}
		return false
	})
	b, problems := browser(t)
	signIn(t, b, cp.URL(), adminToken)
	err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score"),
		chromedp.Poll[chromedp.Void](`(() => { const a = document.querySelector('#versions tr[data-version="2"] a.compare-link'); if (!a) return false; a.click(); return true; })()`, chromedp.WithPollingTimeout(15*time.Second)),
		chromedp.WaitVisible(chromedp.CSS("#compare-production")))
	if err != nil {
		t.Fatalf("open the comparison from the versions table: %v", err)
	}
	// Cells by row label: [v1, v2].
	cells := func(table, row string) []string {
		t.Helper()
		got, err := chromedp.Run(b, chromedp.Evaluate[[]string](fmt.Sprintf(`(() => {
			const tr = [...document.querySelectorAll("#%s tbody tr")].find((r) => r.querySelector("th").textContent === %q);
			return tr ? [...tr.querySelectorAll("td")].map((td) => td.textContent) : [];
		})()`, table, row)))
		if err != nil || len(got) != 2 {
			t.Fatalf("%s row %q: %q (%v)", table, row, got, err)
		}
		return got
	}
	if title, _ := textOf(b, "h1"); title != "calling-score: v1 and v2" {
		t.Fatalf("the comparison's title is %q", title)
	}
	// v2 runs in shadow: it scores rows, and answers no request.
	req, rows := cells("compare-production", "Requests answered"), cells("compare-production", "Rows scored")
	if n1, _ := strconv.Atoi(req[0]); n1 == 0 || req[1] != "0" {
		t.Fatalf("requests answered read %q, want some by v1 and none by the shadow v2", req)
	}
	if n2, _ := strconv.Atoi(rows[1]); n2 == 0 {
		t.Fatalf("rows scored read %q, want some by the shadow v2", rows)
	}
	if rows := cells("compare-production", "Shadow rows"); rows[0] != "-" || rows[1] == "-" {
		t.Fatalf("shadow rows read %q: want v2's, and none for v1", rows)
	}
	if diff := cells("compare-production", "Shadow p50 |canary − production|"); !strings.HasPrefix(diff[1], "≤ ") {
		t.Fatalf("v2's shadow difference reads %q", diff[1])
	}
	if note, _ := textOf(b, "#shadow-note"); !strings.Contains(note, "v2 runs in shadow") {
		t.Fatalf("the shadow note reads %q", note)
	}
	if drift := cells("compare-production", "Drift now (monitor window)"); drift[0] == "no traffic" {
		t.Fatalf("v1's drift reads %q though it serves", drift[0])
	}
	// No evaluation on the same rows yet: the section says how to make one, and
	// compares no cards.
	if s, _ := textOf(b, "#compare-eval"); !strings.Contains(s, "No evaluation on the same rows covers v1 and v2") || !strings.Contains(s, "--record") {
		t.Fatalf("the same-rows section without an evaluation reads %q", s)
	}
	// An evaluation recorded through the API shows, on the same rows, with its
	// interval and source.
	if _, err := cl.RecordEvaluation(ctx, "calling-score", registry.Evaluation{Data: "rows.csv", Rows: 5000, Versions: []int{1, 2}, Confidence: 0.95,
		Figures:     []registry.EvalFigures{{Name: "v1", MSE: 0.006, MAE: 0.057, R2: 0.913, CalibrationError: 0.0073}, {Name: "v2", MSE: 0.00463, MAE: 0.0497, R2: 0.933, CalibrationError: 0.0064}},
		Differences: []registry.EvalDifference{{Name: "v2", Baseline: "v1", MSE: -0.00137, Low: -0.0016, High: -0.00115, Verdict: "better"}}}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("table#compare-eval"))); err != nil {
		t.Fatalf("the comparison after an evaluation was recorded: %v", err)
	}
	if mse := cells("compare-eval", "MSE"); mse[0] != "0.006" || mse[1] != "0.00463" {
		t.Fatalf("MSE on the same rows reads %q", mse)
	}
	if d := cells("compare-eval", "MSE v2 − v1, 95% interval"); d[0] != "baseline" || d[1] != "-0.00137 [-0.0016, -0.00115] better" {
		t.Fatalf("the difference reads %q", d)
	}
	if s, _ := textOf(b, "#compare-eval-source"); !strings.Contains(s, "5000 rows of rows.csv, evaluated by ") {
		t.Fatalf("the evaluation's source reads %q", s)
	}
	screenshot(t, b, "compare")

	// Promote v2 from here.
	err = chromedp.Do(b,
		chromedp.Poll[chromedp.Void](`(() => { const b = document.getElementById("compare-promote-2"); if (!b || b.disabled) return false; b.click(); return true; })()`, chromedp.WithPollingTimeout(15*time.Second)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := textOf(b, "#confirm-text"); !strings.Contains(s, "Promote calling-score v2 to production (now v1)") {
		t.Fatalf("the confirmation reads %q", s)
	}
	if err := chromedp.Do(b, chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.Poll[chromedp.Void](`!!document.getElementById("compare-promote-2") && document.getElementById("compare-promote-2").disabled`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("the comparison after promoting v2: %v", err)
	}
	if m, _ := cl.Model(ctx, "calling-score"); m.Production != 2 {
		t.Fatalf("production is v%d after promoting v2 from the comparison", m.Production)
	}
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// The blend and the policy are set from the model page behind the same
// confirmation as the other actions; a cancel changes nothing, and a value the
// control plane refuses says why and changes nothing.
func TestDashboardBlendAndPolicyBehindTheConfirmation(t *testing.T) {
	ctx := context.Background()
	cp, cl := noAuthWithVersions(t, 1)
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	before, err := cl.Policy(ctx, "calling-score")
	if err != nil {
		t.Fatal(err)
	}
	b, problems := browser(t)
	set := func(fields map[string]string) chromedp.Action[chromedp.Void] {
		js, _ := json.Marshal(fields)
		return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { for (const [id, v] of Object.entries(%s)) { const el = document.getElementById(id); el.value = v; el.dispatchEvent(new Event("input")); } })()`, js))
	}
	// The dialog's button is pressed from the page: a redraw under the dialog
	// can move it between finding it and a mouse click.
	okClick := chromedp.Evaluate[chromedp.Void](`document.getElementById("confirm-ok").click()`)
	confirmOf := func(button string) string {
		t.Helper()
		// Found and clicked in one step: the page redraws every few seconds.
		click := fmt.Sprintf(`(() => { const b = document.querySelector(%q); if (!b || b.disabled) return false; b.click(); return true; })()`, button)
		if err := chromedp.Do(b, chromedp.Poll[chromedp.Void](click, chromedp.WithPollingTimeout(15*time.Second)), chromedp.WaitVisible(chromedp.CSS("#confirm-ok"))); err != nil {
			t.Fatalf("%s: %v", button, err)
		}
		s, err := textOf(b, "#confirm-text")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score"), chromedp.WaitVisible(chromedp.CSS("#set-blend")), set(map[string]string{"blend": "0.4"})); err != nil {
		t.Fatal(err)
	}
	if s := confirmOf("#set-blend"); !strings.Contains(s, "Set calling-score's blend from 1 to 0.4") {
		t.Fatalf("the blend's confirmation reads %q", s)
	}
	if err := chromedp.Do(b, chromedp.Click(chromedp.CSS("#confirm-cancel")), chromedp.WaitNotVisible(chromedp.CSS("#confirm-ok"))); err != nil {
		t.Fatal(err)
	}
	if m, _ := cl.Model(ctx, "calling-score"); m.Blend != nil {
		t.Fatalf("a cancelled blend set it to %v", *m.Blend)
	}
	confirmOf("#set-blend")
	if err := chromedp.Do(b, okClick,
		chromedp.Poll[chromedp.Void](`document.getElementById("alert").textContent.includes("blend is 0.4 (was 1)")`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		text, _ := textOf(b, "#alert")
		t.Fatalf("set the blend: the page says %q (%v)", text, err)
	}
	if m, _ := cl.Model(ctx, "calling-score"); m.Blend == nil || *m.Blend != 0.4 {
		t.Fatalf("the blend after the UI set it: %v", m.Blend)
	}

	// The policy: three settings changed, the confirmation names them.
	if err := chromedp.Do(b, chromedp.WaitVisible(chromedp.CSS("#save-policy")), set(map[string]string{"policy-max_error_rate": "0.2", "policy-bake_time": "2m", "policy-corroborating_nodes": "3"})); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("max error rate %v → 0.2, bake time %s → 2m, corroborating nodes %d → 3", before.MaxErrorRate, time.Duration(before.BakeTime), before.CorroboratingNodes)
	if s := confirmOf("#save-policy"); !strings.Contains(s, "Change calling-score's rollback policy: "+want) {
		t.Fatalf("the policy's confirmation reads %q, want %q", s, want)
	}
	if err := chromedp.Do(b, okClick,
		chromedp.Poll[chromedp.Void](`document.getElementById("alert").textContent.startsWith("Done: calling-score's policy")`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		text, _ := textOf(b, "#alert")
		t.Fatalf("save the policy: the page says %q (%v)", text, err)
	}
	after, err := cl.Policy(ctx, "calling-score")
	if err != nil || after.MaxErrorRate != 0.2 || time.Duration(after.BakeTime) != 2*time.Minute || after.CorroboratingNodes != 3 || after.MaxP99Ms != before.MaxP99Ms {
		t.Fatalf("the policy after the UI saved it: %+v (%v)", after, err)
	}
	// An error rate over 1 is refused by the control plane, which says why.
	if err := chromedp.Do(b, chromedp.WaitVisible(chromedp.CSS("#save-policy")), set(map[string]string{"policy-max_error_rate": "7"})); err != nil {
		t.Fatal(err)
	}
	confirmOf("#save-policy")
	if err := chromedp.Do(b, okClick,
		chromedp.Poll[chromedp.Void](`document.getElementById("alert").textContent.startsWith("Refused:") && document.getElementById("alert").textContent.includes("max_error_rate 7")`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		text, _ := textOf(b, "#alert")
		t.Fatalf("a refused policy says %q (%v)", text, err)
	}
	if p, _ := cl.Policy(ctx, "calling-score"); p.MaxErrorRate != 0.2 {
		t.Fatalf("a refused policy changed max_error_rate to %v", p.MaxErrorRate)
	}
	screenshot(t, b, "settings")
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}

// A model whose every request fails shows red on the overview and its page,
// where a model without requests shows idle.
func TestDashboardFailingIsRedAndIdleIsGrey(t *testing.T) {
	ctx := context.Background()
	cp, cl := fastMonitor(t)
	if _, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: failingArtifact(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	// Thresholds at 1: the monitor never rolls it back, and only "no request
	// succeeded" can make it red.
	lenientPolicy(t, cl)
	idle := testutil.MustModel(t, 1)
	if _, err := cl.Push(ctx, client.PushOptions{Model: "idle-score", ArtifactPath: idle.Path}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Promote(ctx, "idle-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	sc := fastScorer(t, cp.URL())
	stop := make(chan struct{})
	wg := traffic(t, []string{sc.URL()}, stop)
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, "v1's failures in the monitor", 20*time.Second, func() bool {
		h, err := cl.Health(ctx, "calling-score")
		if err != nil {
			return false
		}
		for _, a := range h.Arms {
			if a.Version == 1 && a.Requests > 10 && (a.ErrorRate >= 1 || a.FallbackRate >= 1) {
				return true
			}
		}
		return false
	})
	b, problems := browser(t)
	signIn(t, b, cp.URL(), adminToken)
	stateOf := func(model string) string {
		return fmt.Sprintf(`(() => { const c = document.querySelector('#models tr[data-model=%q] td.state'); const b = c && c.querySelector(".badge"); return b ? b.className + "|" + c.textContent : ""; })()`, model)
	}
	if err := chromedp.Do(b, chromedp.Poll[chromedp.Void](stateOf("calling-score")+` !== ""`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatal(err)
	}
	failingBadge, err := chromedp.Run(b, chromedp.Evaluate[string](stateOf("calling-score")))
	if err != nil || !strings.HasPrefix(failingBadge, "badge red|failing v1 production: no request succeeded") {
		t.Fatalf("the failing model's state reads %q (%v), want red: no request succeeded", failingBadge, err)
	}
	idleBadge, err := chromedp.Run(b, chromedp.Evaluate[string](stateOf("idle-score")))
	if err != nil || idleBadge != "badge grey|idle" {
		t.Fatalf("the idle model's state reads %q (%v), want grey idle", idleBadge, err)
	}
	screenshot(t, b, "overview-failing")
	if err := chromedp.Do(b, chromedp.Navigate(cp.URL()+"/#/model/calling-score"), chromedp.WaitVisible(chromedp.CSS("#model-state .badge"))); err != nil {
		t.Fatal(err)
	}
	page, err := chromedp.Run(b, chromedp.Evaluate[string](`document.querySelector("#model-state .badge").className + "|" + document.querySelector('#outcomes tr[data-arm="1/production"] .badge').textContent`))
	if err != nil || !strings.HasPrefix(page, "badge red|") || !strings.Contains(page, "failing: no request succeeded") {
		t.Fatalf("the failing model's page reads %q (%v)", page, err)
	}
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}
