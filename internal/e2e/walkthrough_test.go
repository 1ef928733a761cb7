package e2e

import (
	"bytes"
	"fmt"
	"math"
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

	"github.com/modelops/modelops/internal/testutil"
)

// step is one command of the README's walkthrough and the output it shows.
type step struct {
	cmd   string
	shown []string
}

// walkthroughSteps reads the first ```sh block under "## Walkthrough": a line
// starting "$ " is a command, the lines after it until the next are what it
// prints, with "…" for what the README leaves out.
func walkthroughSteps(readme string) ([]step, error) {
	_, sec, ok := strings.Cut(readme, "\n## Walkthrough\n")
	if !ok {
		return nil, fmt.Errorf("no \"## Walkthrough\" section")
	}
	_, block, ok := strings.Cut(sec, "```sh\n")
	if !ok {
		return nil, fmt.Errorf("no ```sh block in the walkthrough")
	}
	block, _, ok = strings.Cut(block, "```")
	if !ok {
		return nil, fmt.Errorf("the walkthrough's ```sh block is not closed")
	}
	var steps []step
	for _, line := range strings.Split(strings.TrimRight(block, "\n"), "\n") {
		if cmd, ok := strings.CutPrefix(line, "$ "); ok {
			steps = append(steps, step{cmd: cmd})
			continue
		}
		if len(steps) == 0 {
			return nil, fmt.Errorf("output %q before the first command", line)
		}
		steps[len(steps)-1].shown = append(steps[len(steps)-1].shown, line)
	}
	for i := range steps {
		for n := len(steps[i].shown); n > 0 && strings.TrimSpace(steps[i].shown[n-1]) == ""; n-- {
			steps[i].shown = steps[i].shown[:n-1]
		}
	}
	return steps, nil
}

// shownLine is a line the README shows, as a pattern: "…" stands for anything,
// a time stamp for any time stamp, runs of spaces for any run of spaces (table
// columns), and decimals for numbers within two units of their last shown digit
// (another CPU's ONNX Runtime kernels may move it).
type shownLine struct {
	re       *regexp.Regexp
	decimals []string
}

var shownToken = regexp.MustCompile(`…|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|[-+]?\d+\.\d+| +`)

func parseShown(line string) shownLine {
	var re strings.Builder
	var s shownLine
	re.WriteString("^")
	last := 0
	for _, m := range shownToken.FindAllStringIndex(line, -1) {
		re.WriteString(regexp.QuoteMeta(line[last:m[0]]))
		tok := line[m[0]:m[1]]
		switch {
		case tok == "…":
			re.WriteString(".*?")
		case strings.HasPrefix(tok, " "):
			re.WriteString(" +")
		case len(tok) == 19 && tok[4] == '-':
			re.WriteString(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`)
		default:
			re.WriteString(`([-+]?\d+\.\d+)`)
			s.decimals = append(s.decimals, tok)
		}
		last = m[1]
	}
	re.WriteString(regexp.QuoteMeta(line[last:]))
	re.WriteString(`\s*$`)
	s.re = regexp.MustCompile(re.String())
	return s
}

// matches tells whether a printed line is the shown one.
func (s shownLine) matches(printed string) bool {
	m := s.re.FindStringSubmatch(printed)
	if m == nil {
		return false
	}
	for i, want := range s.decimals {
		w, _ := strconv.ParseFloat(want, 64)
		g, _ := strconv.ParseFloat(m[i+1], 64)
		digits := len(want) - strings.IndexByte(want, '.') - 1
		if math.Abs(g-w) > 2*math.Pow10(-digits)+1e-5*math.Abs(w) {
			return false
		}
	}
	return true
}

// outputMatches tells whether printed is what shown shows: line by line, where a
// line of its own "…" stands for any number of lines.
func outputMatches(shown, printed []string) bool {
	if len(shown) == 0 {
		return len(printed) == 0
	}
	if strings.TrimSpace(shown[0]) == "…" {
		for j := 0; j <= len(printed); j++ {
			if outputMatches(shown[1:], printed[j:]) {
				return true
			}
		}
		return false
	}
	return len(printed) > 0 && parseShown(shown[0]).matches(printed[0]) && outputMatches(shown[1:], printed[1:])
}

func TestShownOutputPatterns(t *testing.T) {
	for _, c := range []struct {
		shown, printed string
		want           bool
	}{
		{"pushed calling-score v2 (sha256 2ff6…, 54657 bytes)", "pushed calling-score v2 (sha256 2ff6b1, 54657 bytes)", true},
		{"pushed calling-score v2 (sha256 2ff6…, 54657 bytes)", "pushed calling-score v2 (sha256 2ff6b1, 54658 bytes)", false},
		{"v1      0.00600  0.0570", "v1  0.00601  0.0570  ", true},
		{"v1      0.00600  0.0570", "v1  0.00603  0.0570", false},
		{"1         2026-11-25 22:06:51  calling-score", "1  2026-12-04 19:57:19  calling-score", true},
		{"1         2026-11-25 22:06:51  calling-score", "2  2026-12-04 19:57:19  calling-score", false},
	} {
		if got := parseShown(c.shown).matches(c.printed); got != c.want {
			t.Errorf("%q against %q: %v, want %v", c.shown, c.printed, got, c.want)
		}
	}
	if !outputMatches([]string{"a", "…", "c"}, []string{"a", "b", "b", "c"}) || outputMatches([]string{"a", "c"}, []string{"a", "b", "c"}) || outputMatches([]string{"a"}, []string{"a", "b"}) {
		t.Error("… between lines")
	}
}

// TestReadmeWalkthroughRunsAsWritten runs the README's walkthrough, parsed from
// README.md itself, against `make run`'s script on free ports and an empty data
// directory, with the binaries built from this tree. The commands change only in
// their addresses, the data directory, bin/ and /tmp/; each must succeed and print
// what the README shows, and promote and roll back must move what the scorer
// answers with.
func TestReadmeWalkthroughRunsAsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("short: builds the binaries, runs make run's script and trains a model")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := walkthroughSteps(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) < 8 {
		t.Fatalf("the walkthrough has %d commands", len(steps))
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildBinaries(t)
	cpAddr, scorerAddr := freeAddr(t), freeAddr(t)
	data, tmp, home := t.TempDir(), t.TempDir(), t.TempDir()

	run := exec.Command("bash", "scripts/run.sh")
	run.Dir = root
	run.Env = append(cleanEnv(home), "BIN="+bin, "DATA="+data, "CP_ADDR="+cpAddr, "SCORER_ADDR="+scorerAddr, "GRPC_ADDR="+freeAddr(t))
	var out lockedBuffer
	run.Stdout, run.Stderr = &out, &out
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-run.Process.Pid, syscall.SIGTERM)
		run.Wait()
	})
	waitFor(t, "make run to say it is running", 120*time.Second, func() bool { return strings.Contains(out.String(), "Ctrl-C stops both.") })

	// What the README names, and where it is here.
	subst := strings.NewReplacer(
		"http://127.0.0.1:8080", "http://"+cpAddr,
		"localhost:8081", scorerAddr,
		".data/", data+"/",
		"bin/modelctl", filepath.Join(bin, "modelctl"),
		"/tmp/", tmp+"/",
	)
	hc := &http.Client{Timeout: 10 * time.Second}
	assign := regexp.MustCompile(`^(export )?[A-Za-z_][A-Za-z0-9_]*=`)
	var prelude []string // the exports and assignments so far, as one shell would keep them
	for _, s := range steps {
		cmdline := subst.Replace(s.cmd)
		c := exec.Command("bash", "-e", "-c", strings.Join(append(prelude, cmdline), "\n"))
		c.Dir = root
		c.Env = cleanEnv(home)
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		if err := c.Run(); err != nil {
			t.Fatalf("$ %s\n%v\nstdout:\n%s\nstderr:\n%s", s.cmd, err, stdout.String(), stderr.String())
		}
		if assign.MatchString(s.cmd) {
			prelude = append(prelude, cmdline)
		}
		printed := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
		if stdout.Len() == 0 {
			printed = nil
		}
		shown := make([]string, len(s.shown))
		for i, l := range s.shown {
			shown[i] = subst.Replace(l)
		}
		if !outputMatches(shown, printed) {
			t.Fatalf("$ %s\nthe README shows:\n%s\nit printed:\n%s\nstderr:\n%s", s.cmd, strings.Join(s.shown, "\n"), stdout.String(), stderr.String())
		}
		t.Logf("$ %s: as shown (%d lines)", s.cmd, len(printed))
		// What promote and roll back change: the version the scorer answers with.
		if f := strings.Fields(s.cmd); len(f) >= 2 && strings.HasSuffix(f[0], "modelctl") && (f[1] == "promote" || f[1] == "rollback") {
			want := 1
			if f[1] == "promote" {
				want, _ = strconv.Atoi(f[3])
			}
			waitFor(t, fmt.Sprintf("the scorer to answer with v%d after %q", want, s.cmd), 30*time.Second, func() bool {
				return score(hc, "http://"+scorerAddr, testutil.Row(0.5)).resp.Version == want
			})
		}
	}
}

// cleanEnv is this process's environment without the CLI's server, token and
// contexts, as a fresh terminal has it.
func cleanEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MODELCTL_") || strings.HasPrefix(kv, "MODELOPS_") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}
