//go:build !linux

package main

import "errors"

func pinTo([]int) error { return errors.New("pinning to CPUs is only supported on Linux") }
