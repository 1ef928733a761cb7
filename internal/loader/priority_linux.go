package loader

import "golang.org/x/sys/unix"

// lowerThreadPriority gives the calling OS thread a low CPU priority on Linux,
// where niceness is per thread.
func lowerThreadPriority() error {
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), loaderNice)
}
