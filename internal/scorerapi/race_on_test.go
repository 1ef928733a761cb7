//go:build race

package scorerapi_test

// raceDetector: the race detector's shadow memory multiplies a process's RSS
// by several times what its Go heap holds, so RSS bounds are read without it.
const raceDetector = true
