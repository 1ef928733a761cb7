package registry

import (
	"errors"
	"fmt"
	"regexp"
)

// Error kinds. Every error the registry returns wraps exactly one of them, and
// internal/api maps each kind to one HTTP status.
var (
	ErrNotFound       = errors.New("not found")
	ErrConflict       = errors.New("conflict")
	ErrInvalid        = errors.New("invalid request")
	ErrInvalidModel   = errors.New("invalid model")
	ErrDigestMismatch = errors.New("digest mismatch")
	ErrTooLarge       = errors.New("too large")
	ErrUnavailable    = errors.New("unavailable")
)

var modelName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// CheckModelName returns an error unless name is a valid model name: lower-case
// letters, digits and dashes, starting with a letter or digit, at most 63 bytes.
func CheckModelName(name string) error {
	if !modelName.MatchString(name) {
		shown := name
		if len(shown) > 80 {
			shown = shown[:80] + "…"
		}
		return Invalidf("model name %q must match %s", shown, modelName)
	}
	return nil
}

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// CheckDigest returns an error unless d is a lower-case hex sha256.
func CheckDigest(d string) error {
	if !digestRE.MatchString(d) {
		return Invalidf("sha256 must be 64 lower-case hex digits")
	}
	return nil
}

// kindError gives err one of the kinds above without repeating the kind's words
// (the runtime's own message already says what is wrong).
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// Invalidf is an ErrInvalid that reads as its message alone: the API's error
// code (invalid_request) names the kind, and a setting read at start-up is no
// request at all.
func Invalidf(format string, a ...any) error {
	return &kindError{ErrInvalid, fmt.Errorf(format, a...)}
}
