package scorerapi

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"

	gojson "github.com/goccy/go-json"
)

// The scorer reads and writes its usual bodies (a /v1/score request and
// answer, an OIP v2 inference request's header and answer) with one of two
// codecs, chosen once at start (scorer --json-codec):
//
//   - "hand" (the default): the hand-written readers and writers of
//     jsonscan.go, scorerequest.go, oipheader.go and answer.go, which take
//     the plain shapes directly and hand anything else to encoding/json;
//   - "library": goccy/go-json, a well-kept drop-in for encoding/json.
//
// Issue 19 keeps the hand codec only while `make bench` shows it at least 10%
// cheaper end to end (CPU per request of the whole scorer process); the bench
// runs one scorer with each, side by side, and docs/benchmarks.md records the
// figures. TestCodecsKnowEveryWireField fails when a wire type gains a field
// the hand codec does not know. Either way, a body that does not decode is
// explained by encoding/json, so both answer errors alike.
const (
	HandCodec    = "hand"
	LibraryCodec = "library"
)

var libraryJSON atomic.Bool

// SetJSONCodec chooses the codec of every scorer in this process: HandCodec or
// LibraryCodec.
func SetJSONCodec(name string) error {
	switch name {
	case HandCodec, "":
		libraryJSON.Store(false)
	case LibraryCodec:
		libraryJSON.Store(true)
	default:
		return fmt.Errorf("JSON codec %q: want %q or %q", name, HandCodec, LibraryCodec)
	}
	return nil
}

// JSONCodec is the codec in use.
func JSONCodec() string {
	if libraryJSON.Load() {
		return LibraryCodec
	}
	return HandCodec
}

// libraryDecodeStrict decodes one JSON object with no unknown fields and
// nothing after it, as decodeStrict does, with the library.
func libraryDecodeStrict(data []byte, v any) error {
	dec := gojson.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// libraryAppend appends v as json.Marshal writes it, with the library.
func libraryAppend(dst []byte, v any) ([]byte, error) {
	b, err := gojson.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}
