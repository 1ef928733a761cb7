//go:build !linux

package loader

// lowerThreadPriority does nothing where niceness is not per thread.
func lowerThreadPriority() error { return nil }
