package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"
)

// burnEnv, when set in the environment, makes the test binary a child that
// spins on the CPU until it has used that much CPU time, says "burned" and
// waits for its stdin to close.
const burnEnv = "MODELBENCH_TEST_BURN"

func TestMain(m *testing.M) {
	// The test binary stands in for modelbench when a test starts a child.
	if len(os.Args) > 2 && os.Args[1] == "-child" {
		if err := runChild(os.Args[2], os.Args[3:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if v := os.Getenv(burnEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		x := 0
		for {
			for i := 0; i < 100000; i++ {
				x += i * i
			}
			if cpu, err := processCPU(os.Getpid()); err != nil || cpu >= d {
				break
			}
		}
		fmt.Println("burned", x%2)
		bufio.NewReader(os.Stdin).ReadString('\n')
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startBurner starts the test binary as a child that burns d of CPU time and returns it
// once it has, still running, with when it was started.
func startBurner(t *testing.T, d time.Duration) (*exec.Cmd, time.Time) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), burnEnv+"="+d.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("burner: %v (printed %q)", err, line)
	}
	return cmd, start
}

// A child that burned the CPU for a while reads as more than nothing and no more
// than every CPU for as long as it has lived; a meter divides what it spent by
// the requests it is charged with.
func TestProcessCPUOfABurningChild(t *testing.T) {
	m, err := startMeter(os.Getpid()) // this process, for the arithmetic
	if err != nil {
		t.Fatal(err)
	}
	const burned = 200 * time.Millisecond
	cmd, start := startBurner(t, burned)
	cpu, err := processCPU(cmd.Process.Pid)
	wall := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if limit := wall * time.Duration(runtime.NumCPU()); cpu < burned || cpu > limit {
		t.Errorf("child's CPU time %s: want at least the %s it burned and at most %s (%s of wall time × %d CPUs)", cpu, burned, limit, wall, runtime.NumCPU())
	}

	burner, err := startMeter(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	burner.before = cpuTimes{} // everything since it started
	c, err := burner.stop(1000, 256000)
	if err != nil {
		t.Fatal(err)
	}
	if c.cpu < cpu {
		t.Errorf("CPU time went back from %s to %s", cpu, c.cpu)
	}
	if c.sys < 0 || c.sys > c.cpu || c.sysShare() > 1 {
		t.Errorf("system time %s of %s", c.sys, c.cpu)
	}
	if got, want := c.perRequest(), c.cpu/1000; got != want || got <= 0 {
		t.Errorf("per request %s, want %s (more than 0)", got, want)
	}
	if got, want := c.perRow(), c.cpu/256000; got != want {
		t.Errorf("per row %s, want %s", got, want)
	}
	if _, err := m.stop(1, 1); err != nil {
		t.Fatal(err)
	}
	// A process that has ended has no stat to read.
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := processCPU(cmd.Process.Pid); err == nil {
		t.Errorf("processCPU of an ended process: no error")
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       cpuTimes
		bad        bool
	}{
		// utime 250 ticks, stime 50.
		{name: "plain", stat: "4242 (scorer) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 0 0", want: cpuTimes{2500 * time.Millisecond, 500 * time.Millisecond}},
		{name: "name with spaces and parentheses", stat: "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 7 7 20 0 1 0 1 0 0", want: cpuTimes{10 * time.Millisecond, 20 * time.Millisecond}},
		{name: "children's time is not counted", stat: "7 (x) R 1 7 7 0 -1 0 0 0 0 0 0 0 500 500 20 0 1 0 1 0 0"},
		{name: "no command name", stat: "7 x R 1", bad: true},
		{name: "too short", stat: "7 (x) R 1 7 7 0 -1 0 0", bad: true},
		{name: "not a number", stat: "7 (x) R 1 7 7 0 -1 0 0 0 0 0 ten 2 0 0 20 0 1 0 1 0 0", bad: true},
		{name: "negative", stat: "7 (x) R 1 7 7 0 -1 0 0 0 0 0 -1 2 0 0 20 0 1 0 1 0 0", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.stat))
			if tc.bad {
				if err == nil {
					t.Errorf("parsed %q as %+v, want an error", tc.stat, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("parseStat(%q) = %+v, %v; want %+v", tc.stat, got, err, tc.want)
			}
		})
	}
}

func TestCostArithmetic(t *testing.T) {
	c := cost{cpu: 3 * time.Millisecond, requests: 100, rows: 25600}.add(cost{cpu: time.Millisecond, requests: 100, rows: 25600})
	if got, want := c.perRequest(), 20*time.Microsecond; got != want {
		t.Errorf("per request %s, want %s", got, want)
	}
	if got, want := c.perRow(), 78*time.Nanosecond; got != want { // 4 ms / 51200, truncated
		t.Errorf("per row %s, want %s", got, want)
	}
	if (cost{cpu: time.Second}).perRequest() != 0 || (cost{cpu: time.Second}).perRow() != 0 {
		t.Errorf("nothing answered: want 0 per request and per row")
	}
}
