// Package loader owns ONNX Runtime inside a process: finding and initialising the
// shared library, building and verifying sessions, and the hot-swap slot that lets
// a scorer replace a model while requests are running on the old one.
package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// LibraryEnv names the environment variable that points at libonnxruntime.
const LibraryEnv = "ONNXRUNTIME_LIB"

// cacheRel is where `make ort` installs the library, relative to the repository root.
var cacheRel = filepath.Join(".cache", "onnxruntime", "libonnxruntime.so.1")

var systemPaths = []string{
	"/usr/local/lib/libonnxruntime.so.1",
	"/usr/local/lib/libonnxruntime.so",
	"/usr/lib/libonnxruntime.so.1",
	"/usr/lib/libonnxruntime.so",
	"/usr/lib/x86_64-linux-gnu/libonnxruntime.so.1",
	"/usr/lib/x86_64-linux-gnu/libonnxruntime.so",
}

// ErrLibraryNotFound says where the library was looked for and how to get it.
var ErrLibraryNotFound = errors.New("ONNX Runtime library not found: run `make ort` or set " + LibraryEnv + " to the path of libonnxruntime.so")

// FindLibrary returns the path of the ONNX Runtime shared library: the explicit
// path if given, then $ONNXRUNTIME_LIB, then .cache/ in the working directory or
// any parent of it or of the executable, then the system library directories.
func FindLibrary(explicit string) (string, error) {
	for _, p := range []string{explicit, os.Getenv(LibraryEnv)} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("ONNX Runtime library %s: %w (run `make ort` or fix %s)", p, err, LibraryEnv)
		}
		return p, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, cacheRel)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	for _, p := range systemPaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrLibraryNotFound
}

var (
	initMu   sync.Mutex
	initPath string
)

// Init loads the ONNX Runtime library found by FindLibrary(explicit) and creates the
// process-wide environment. Calling it again is a no-op that returns the same path.
func Init(explicit string) (string, error) {
	initMu.Lock()
	defer initMu.Unlock()
	if initPath != "" {
		return initPath, nil
	}
	path, err := FindLibrary(explicit)
	if err != nil {
		return "", err
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return "", fmt.Errorf("initialise ONNX Runtime from %s: %w", path, err)
	}
	initPath = path
	return path, nil
}

// Version returns the version string of the loaded ONNX Runtime.
func Version() string { return ort.GetVersion() }
