package loader

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"golang.org/x/sys/unix"

	"github.com/modelops/modelops/internal/artifact"
)

// VerifyCommand is the hidden subcommand a control plane runs its own binary
// with to verify a pushed artifact in a child process (ServeVerify).
const VerifyCommand = "verify-artifact"

// VerifyChildEnv is set in a verify child's environment; a process that has it
// never starts verify children itself (a binary that does not answer
// VerifyCommand would otherwise start one in turn).
const VerifyChildEnv = "MODELOPS_VERIFY_CHILD"

// VerifyRequest is what a verify child reads on its standard input: one JSON
// object.
type VerifyRequest struct {
	// Path is the staged artifact.
	Path  string `json:"path"`
	Model string `json:"model"`
	// Want is the model's signature, when it has one.
	Want *artifact.Signature `json:"want,omitempty"`
	// Card is the model card's JSON (may be empty).
	Card json.RawMessage `json:"card,omitempty"`
	// Library is the ONNX Runtime library the parent loaded.
	Library string `json:"library,omitempty"`
	// CPUTime and AddressSpace are the child's limits (RLIMIT_CPU, RLIMIT_AS),
	// set before ONNX Runtime is loaded; 0 leaves one unset.
	CPUTime      time.Duration `json:"cpu_time,omitempty"`
	AddressSpace int64         `json:"address_space,omitempty"`
}

// VerifyAnswer is what a verify child writes on its standard output.
type VerifyAnswer struct {
	Signature artifact.Signature `json:"signature"`
	// Error says why the artifact was refused; empty when it passed.
	Error string `json:"error,omitempty"`
}

// maxVerifyRequest bounds the request a child reads: a card is at most 8 MiB.
const maxVerifyRequest = 16 << 20

// ServeVerify is a verify child's whole life: it reads one VerifyRequest from
// r, limits its own CPU time and address space, verifies the artifact (embedded
// data only, signature, card, golden inputs, warm-up) and writes one
// VerifyAnswer to w. An error means no answer could be given (the request was
// unreadable, or the limits could not be set); a refused artifact is an answer.
func ServeVerify(r io.Reader, w io.Writer) error {
	var req VerifyRequest
	if err := json.NewDecoder(io.LimitReader(r, maxVerifyRequest)).Decode(&req); err != nil {
		return fmt.Errorf("%s: reading the request: %w", VerifyCommand, err)
	}
	if err := limitSelf(req.CPUTime, req.AddressSpace); err != nil {
		return fmt.Errorf("%s: %w", VerifyCommand, err)
	}
	sig, err := verifyRequest(req)
	ans := VerifyAnswer{Signature: sig}
	if err != nil {
		ans.Error = err.Error()
	}
	return json.NewEncoder(w).Encode(ans)
}

func verifyRequest(req VerifyRequest) (artifact.Signature, error) {
	var card *artifact.Card
	if len(req.Card) > 0 {
		c, err := artifact.ParseCard(req.Card)
		if err != nil {
			return artifact.Signature{}, err
		}
		card = c
	}
	if _, err := Init(req.Library); err != nil {
		return artifact.Signature{}, err
	}
	return Verify(req.Path, req.Model, req.Want, card)
}

// limitSelf sets this process's CPU-time and address-space limits, soft and
// hard alike: past the CPU limit the kernel kills the process (SIGKILL), and
// past the address-space one allocations fail.
func limitSelf(cpu time.Duration, as int64) error {
	if cpu > 0 {
		secs := uint64(math.Ceil(cpu.Seconds()))
		if err := unix.Setrlimit(unix.RLIMIT_CPU, &unix.Rlimit{Cur: secs, Max: secs}); err != nil {
			return fmt.Errorf("RLIMIT_CPU %ds: %w", secs, err)
		}
	}
	if as > 0 {
		if err := unix.Setrlimit(unix.RLIMIT_AS, &unix.Rlimit{Cur: uint64(as), Max: uint64(as)}); err != nil {
			return fmt.Errorf("RLIMIT_AS %d: %w", as, err)
		}
	}
	return nil
}
