package main

import "github.com/modelops/modelops/internal/registry/boltmeta"

// checkBoltFile opens a bbolt file (a backup) read-only and runs its
// consistency check; only the boltmeta driver opens bbolt files.
func checkBoltFile(path string) error { return boltmeta.CheckFile(path) }
