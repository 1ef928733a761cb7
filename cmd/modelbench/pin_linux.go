package main

import (
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinTo keeps every thread of this process on cpus (threads started later
// inherit it from the thread that starts them) and sizes GOMAXPROCS to match.
func pinTo(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	// Twice, in case a thread started while the first pass ran.
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil {
				return err
			}
		}
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}
