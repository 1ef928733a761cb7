package scorerapi

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/modelops/modelops/internal/wire"
)

// A single-row answer costs encoding/json about a microsecond, as much as the
// scorer's whole monitoring of the request, and a 256-row JSON answer tens:
// reflection over the struct, and strconv's float formatting reached through it
// one value at a time. The scorer's own answers are written directly here, byte
// for byte as encoding/json writes them (FuzzScoreResponse and FuzzOIPAnswer
// hold them to it); anything else, and any answer with a string that would need
// escaping or a number JSON cannot carry, goes to encoding/json.

// AppendJSON appends v as json.NewEncoder's Encode writes it, newline included:
// directly when v is a wire.ScoreResponse or a wire.OIPInferResponse of the usual shape,
// with encoding/json otherwise, whose error it returns (dst is then unchanged).
// The scorer writes its JSON answers with it; `make bench` gives its null-model
// handler the same writer, so that both compare alike.
func AppendJSON(dst []byte, v any) ([]byte, error) {
	if libraryJSON.Load() {
		out, err := libraryAppend(dst, v)
		if err != nil {
			return dst, err
		}
		return append(out, '\n'), nil
	}
	out, ok := dst, false
	switch r := v.(type) {
	case wire.ScoreResponse:
		out, ok = appendScoreResponse(dst, &r)
	case *wire.ScoreResponse:
		if r != nil {
			out, ok = appendScoreResponse(dst, r)
		}
	case wire.OIPInferResponse:
		out, ok = appendOIPAnswer(dst, &r)
	case *wire.OIPInferResponse:
		if r != nil {
			out, ok = appendOIPAnswer(dst, r)
		}
	}
	if ok {
		return append(out, '\n'), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(append(dst, b...), '\n'), nil
}

// appendScoreResponse appends r as json.Marshal writes it when its strings are
// plain and its scores finite; otherwise it reports false, appending nothing.
func appendScoreResponse(dst []byte, r *wire.ScoreResponse) ([]byte, bool) {
	if !plain(r.Model) || !plain(r.Source) || !plain(r.Arm) || !plain(r.Reason) || !plain(r.RequestID) || r.Shape != nil || r.Outputs != nil || r.Shapes != nil {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, `{"model":"`...)
	dst = append(dst, r.Model...)
	dst = append(dst, '"')
	ok := true
	if r.Score != nil {
		dst = append(dst, `,"score":`...)
		dst, ok = appendFloat32(dst, *r.Score)
	}
	if ok && len(r.Scores) > 0 {
		dst = append(dst, `,"scores":`...)
		dst, ok = appendFloat32s(dst, r.Scores)
	}
	if !ok {
		return dst[:start], false
	}
	dst = append(dst, `,"source":"`...)
	dst = append(dst, r.Source...)
	dst = append(dst, '"')
	if r.Version != 0 {
		dst = append(dst, `,"version":`...)
		dst = strconv.AppendInt(dst, int64(r.Version), 10)
	}
	dst = append(dst, `,"arm":"`...)
	dst = append(dst, r.Arm...)
	dst = append(dst, '"')
	if r.Reason != "" {
		dst = append(dst, `,"reason":"`...)
		dst = append(dst, r.Reason...)
		dst = append(dst, '"')
	}
	if r.RequestID != "" {
		dst = append(dst, `,"request_id":"`...)
		dst = append(dst, r.RequestID...)
		dst = append(dst, '"')
	}
	return append(dst, '}'), true
}

// appendFloat32s appends v as a JSON array the way encoding/json writes a
// []float32, or reports false (having appended something) at a NaN or an
// infinity, which encoding/json refuses.
func appendFloat32s(dst []byte, v []float32) ([]byte, bool) {
	dst = append(dst, '[')
	for i, f := range v {
		if i > 0 {
			dst = append(dst, ',')
		}
		var ok bool
		if dst, ok = appendFloat32(dst, f); !ok {
			return dst, false
		}
	}
	return append(dst, ']'), true
}

// appendFloat32 appends f as encoding/json writes a float32: the shortest
// decimal that reads back as f, with an exponent only below 1e-6 or from 1e21
// on, and no leading zero in a negative exponent. It reports false for NaN and
// the infinities, appending nothing.
func appendFloat32(dst []byte, f float32) ([]byte, bool) {
	abs := float32(math.Abs(float64(f)))
	if abs != abs || abs > math.MaxFloat32 {
		return dst, false
	}
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, float64(f), format, -1, 32)
	if n := len(dst); format == 'e' && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
		dst[n-2] = dst[n-1]
		dst = dst[:n-1]
	}
	return dst, true
}
