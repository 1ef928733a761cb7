//go:build !race

package scorerapi_test

const raceDetector = false
