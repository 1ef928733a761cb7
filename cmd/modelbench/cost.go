package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, fixed at 100
// ticks a second in Linux's user ABI whatever the kernel's own HZ.
const userHZ = 100

// cpuTimes is a process's CPU time so far, in user space and in the kernel.
type cpuTimes struct {
	user, sys time.Duration
}

func (c cpuTimes) total() time.Duration { return c.user + c.sys }

// processCPU is the CPU time (user + system, every thread, those that have ended
// included) that process pid has used so far, from /proc/PID/stat. Its
// resolution is one tick (10 ms): windows of seconds make that small.
func processCPU(pid int) (time.Duration, error) {
	c, err := processTimes(pid)
	return c.total(), err
}

// processTimes is processCPU with user and system time apart.
func processTimes(pid int) (cpuTimes, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTimes{}, err
	}
	return parseStat(b)
}

// parseStat reads utime and stime (fields 14 and 15) from the contents of a
// /proc/PID/stat file. The command name (field 2) is in parentheses and may
// itself hold spaces and parentheses, so fields are counted from the last ')'.
func parseStat(stat []byte) (cpuTimes, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return cpuTimes{}, fmt.Errorf("/proc stat %q: no command name", truncateBytes(stat, 80))
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state), so utime (14) is f[11] and stime (15) f[12].
	if len(f) < 13 {
		return cpuTimes{}, fmt.Errorf("/proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks [2]int64
	for k, field := range f[11:13] {
		n, err := strconv.ParseInt(string(field), 10, 64)
		if err != nil || n < 0 {
			return cpuTimes{}, fmt.Errorf("/proc stat: bad tick count %q", field)
		}
		ticks[k] = n
	}
	return cpuTimes{user: ticksToDuration(ticks[0]), sys: ticksToDuration(ticks[1])}, nil
}

func ticksToDuration(ticks int64) time.Duration {
	return time.Duration(ticks) * (time.Second / userHZ)
}

// cost is what one contender spent over one or more load windows: its process's
// CPU time and what it answered (requests, and rows in them).
type cost struct {
	cpu time.Duration
	// sys is the part of cpu spent in the kernel.
	sys      time.Duration
	requests int
	rows     int
}

func (c cost) add(o cost) cost {
	return cost{cpu: c.cpu + o.cpu, sys: c.sys + o.sys, requests: c.requests + o.requests, rows: c.rows + o.rows}
}

// sysShare is the kernel's share of the CPU time (0 when none was spent).
func (c cost) sysShare() float64 {
	if c.cpu <= 0 {
		return 0
	}
	return float64(c.sys) / float64(c.cpu)
}

// perRequest is the CPU time per request answered (0 when none was).
func (c cost) perRequest() time.Duration {
	if c.requests == 0 {
		return 0
	}
	return c.cpu / time.Duration(c.requests)
}

// perRow is the CPU time per row answered (0 when none was).
func (c cost) perRow() time.Duration {
	if c.rows == 0 {
		return 0
	}
	return c.cpu / time.Duration(c.rows)
}

// meter measures the CPU one process spends over a window: start it before the
// first request, stop it after the last answer.
type meter struct {
	pid    int
	before cpuTimes
}

func startMeter(pid int) (meter, error) {
	c, err := processTimes(pid)
	return meter{pid: pid, before: c}, err
}

// stop returns the CPU time spent since start, charged to requests answered
// with rows rows in all.
func (m meter) stop(requests, rows int) (cost, error) {
	c, err := processTimes(m.pid)
	if err != nil {
		return cost{}, err
	}
	return cost{cpu: c.total() - m.before.total(), sys: c.sys - m.before.sys, requests: requests, rows: rows}, nil
}
