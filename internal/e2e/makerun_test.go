package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/scorerapi"

	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

// TestMakeRunServesTheShippedModelAndStopsWithItsParent runs scripts/run.sh,
// which is `make run`, as a newcomer would get it: from an empty data directory
// the scorer answers with the shipped model, promoted, and the dashboard is up.
// Then the shell that started it is killed alone, as a supervisor that signals
// only make would do, and both processes must stop.
func TestMakeRunServesTheShippedModelAndStopsWithItsParent(t *testing.T) {
	if testing.Short() {
		t.Skip("short: builds the binaries and runs make run's script")
	}
	bin := buildBinaries(t)
	cpAddr, scorerAddr := freeAddr(t), freeAddr(t)
	data := t.TempDir()
	// The shell in between is the parent that goes away; `; :` keeps it from
	// replacing itself with bash.
	cmd := exec.Command("sh", "-c", "bash ../../scripts/run.sh; :")
	cmd.Env = append(os.Environ(), "BIN="+bin, "DATA="+data, "CP_ADDR="+cpAddr, "SCORER_ADDR="+scorerAddr, "GRPC_ADDR="+freeAddr(t))
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()

	hc := &http.Client{Timeout: 10 * time.Second}
	var got wire.ScoreResponse
	for deadline := time.Now().Add(90 * time.Second); ; {
		r := score(hc, "http://"+scorerAddr, testutil.Row(0.5))
		if r.resp.Source == scorerapi.SourceModel {
			got = r.resp
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scorer never answered from the model (last answer %+v); make run said:\n%s\ncontrol plane log:\n%s\nscorer log:\n%s",
				r, out.String(), readFile(data, "control-plane.log"), readFile(data, "scorer.log"))
		}
		select {
		case <-exited:
			t.Fatalf("make run's script exited before the scorer answered:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if got.Model != "calling-score" || got.Version != 1 || got.Score == nil || *got.Score <= 0 || *got.Score >= 1 {
		t.Fatalf("answer %+v, want calling-score v1 with a score in (0,1)", got)
	}
	// The README's walkthrough shows this very answer (39 times 0.5).
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	shown := regexp.MustCompile(`\{"model":"calling-score","score":([0-9.]+),"source":"model","version":1`).FindSubmatch(readme)
	if shown == nil {
		t.Fatal("the README shows no answer from calling-score v1")
	}
	// Within what another CPU's ONNX Runtime kernels may move the last digits.
	if want, _ := strconv.ParseFloat(string(shown[1]), 64); math.Abs(want-float64(*got.Score)) > 1e-5 {
		t.Fatalf("the README shows score %s for 39 times 0.5; the shipped model answers %v", shown[1], *got.Score)
	}
	resp, err := http.Get("http://" + cpAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("<html")) {
		t.Fatalf("dashboard: %d %.200s", resp.StatusCode, page)
	}
	waitFor(t, "make run to say it is running", 30*time.Second, func() bool { return strings.Contains(out.String(), "modelops is running.") })
	// Its hints for another terminal name this control plane, which is not the
	// CLI's default: following them must not reach another one on :8080.
	waitFor(t, "make run's hints", 10*time.Second, func() bool { return strings.Contains(out.String(), "Ctrl-C stops both.") })
	if hint := "export MODELCTL_SERVER=http://" + cpAddr + "\n"; !strings.Contains(out.String(), hint) {
		t.Fatalf("make run on %s does not hint %q:\n%s", cpAddr, hint, out.String())
	}

	// A second make run on the same addresses refuses to start, rather than
	// talk to the first one's control plane with its own token.
	second := exec.Command("bash", "../../scripts/run.sh")
	second.Env = append(os.Environ(), "BIN="+bin, "DATA="+t.TempDir(), "CP_ADDR="+cpAddr, "SCORER_ADDR="+scorerAddr, "GRPC_ADDR="+freeAddr(t))
	said, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(said), "already listens on "+cpAddr) {
		t.Fatalf("a second make run on the same addresses: %v\n%s", err, said)
	}
	// The same with the control plane's address given with no host, as a
	// listen address may be: its check dials loopback.
	_, port, _ := net.SplitHostPort(cpAddr)
	second = exec.Command("bash", "../../scripts/run.sh")
	second.Env = append(os.Environ(), "BIN="+bin, "DATA="+t.TempDir(), "CP_ADDR=:"+port, "SCORER_ADDR="+freeAddr(t), "GRPC_ADDR="+freeAddr(t))
	said, err = second.CombinedOutput()
	if err == nil || !strings.Contains(string(said), "already listens on :"+port) {
		t.Fatalf("a second make run with CP_ADDR=:%s: %v\n%s", port, err, said)
	}
	if got = score(hc, "http://"+scorerAddr, make([]float32, 39)).resp; got.Source != scorerapi.SourceModel {
		t.Fatalf("after the refused second run the first scorer answered %+v", got)
	}

	// Kill the parent shell alone: the script must notice and stop both.
	cmd.Process.Signal(syscall.SIGKILL)
	deadline := time.Now().Add(30 * time.Second)
	for listening(cpAddr) || listening(scorerAddr) {
		if time.Now().After(deadline) {
			t.Fatalf("control plane listening %v, scorer %v, 30 s after make run's parent went:\n%s", listening(cpAddr), listening(scorerAddr), out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "parent has gone") {
		t.Fatalf("the script did not say why it stopped:\n%s", out.String())
	}
}

// A scorer that cannot start stops make run at once, with the scorer's own
// words, and takes the control plane down with it.
func TestMakeRunSaysWhyTheScorerDidNotStart(t *testing.T) {
	if testing.Short() {
		t.Skip("short: builds the binaries and runs make run's script")
	}
	bin := buildBinaries(t)
	cpAddr := freeAddr(t)
	cmd := exec.Command("bash", "../../scripts/run.sh")
	cmd.Env = append(os.Environ(), "BIN="+bin, "DATA="+t.TempDir(), "CP_ADDR="+cpAddr, "SCORER_ADDR=127.0.0.1:99999", "GRPC_ADDR="+freeAddr(t))
	done := make(chan struct{})
	var said []byte
	var err error
	go func() { said, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("make run did not stop after its scorer failed:\n%s", said)
	}
	if err == nil || !strings.Contains(string(said), "the scorer did not start") || !strings.Contains(string(said), "99999") || strings.Contains(string(said), "modelops is running") {
		t.Fatalf("make run with a scorer that cannot listen: %v\n%s", err, said)
	}
	if listening(cpAddr) {
		t.Fatalf("the control plane still listens on %s after make run stopped", cpAddr)
	}
}

// buildBinaries builds modelctl and scorer into a temporary BIN for make run's
// script.
func buildBinaries(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	for _, c := range []string{"modelctl", "scorer"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, c), "../../cmd/"+c).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", c, err, out)
		}
	}
	return bin
}

// freeAddr is a loopback address with a port nothing listens on just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// listening tells whether something accepts connections at addr.
func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func readFile(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return fmt.Sprint(err)
	}
	return string(b)
}
