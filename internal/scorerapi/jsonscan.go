package scorerapi

import "strconv"

// jsonScan reads plain JSON directly, for the request shapes that clients send
// by the thousand a second (see readOIPHeader and readScoreRequest): strings of
// printable ASCII without escapes, numbers, booleans, objects and arrays. It
// accepts a subset of JSON and reads it as encoding/json does; anything else it
// reports as unread, for encoding/json to decode or refuse.
type jsonScan struct {
	b []byte
	i int
}

// once marks bit in seen and reports whether it was clear: a repeated key
// (which encoding/json would merge) is left to encoding/json.
func once(seen *uint8, bit uint8) bool {
	first := *seen&bit == 0
	*seen |= bit
	return first
}

func (s *jsonScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips white space and consumes c if it comes next.
func (s *jsonScan) next(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (s *jsonScan) end() bool {
	s.space()
	return s.i == len(s.b)
}

// object reads {"key": value, …}, calling field after each key's colon to read
// its value.
func (s *jsonScan) object(field func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		key, ok := s.str()
		if !ok || !s.next(':') || !field(key) {
			return false
		}
		if !s.next(',') {
			return s.next('}')
		}
	}
}

// array reads [value, …], calling elem to read each value.
func (s *jsonScan) array(elem func() bool) bool {
	if !s.next('[') {
		return false
	}
	if s.next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if !s.next(',') {
			return s.next(']')
		}
	}
}

// str reads a string of printable ASCII with no escapes; it aliases s.b.
func (s *jsonScan) str() ([]byte, bool) {
	if !s.next('"') {
		return nil, false
	}
	for start := s.i; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

// int reads an integer of at most 18 digits, with no fraction or exponent.
func (s *jsonScan) int() (int64, bool) {
	s.space()
	neg := s.i < len(s.b) && s.b[s.i] == '-'
	if neg {
		s.i++
	}
	start := s.i
	var v int64
	for ; s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9'; s.i++ {
		v = v*10 + int64(s.b[s.i]-'0')
	}
	n := s.i - start
	if n == 0 || n > 18 || (n > 1 && s.b[start] == '0') {
		return 0, false
	}
	if s.i < len(s.b) {
		if c := s.b[s.i]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	if neg {
		v = -v
	}
	return v, true
}

func (s *jsonScan) bool() (bool, bool) {
	s.space()
	switch rest := s.b[s.i:]; {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		s.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		s.i += 5
		return false, true
	}
	return false, false
}

// number reads a JSON number as encoding/json reads it into a float64; false
// for one that is not a JSON number or overflows a float64.
func (s *jsonScan) number() (float64, bool) {
	s.space()
	b, i := s.b, s.i
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	// The digits' value, while it is exact: most features are short decimals,
	// whose value is one division away (below).
	var mant uint64
	nd, frac := 0, 0
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			mant = mant*10 + uint64(b[i]-'0')
			nd++
		}
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		j := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			mant = mant*10 + uint64(b[i]-'0')
			nd++
		}
		if i == j {
			return 0, false
		}
		frac = i - j
	}
	exact := nd <= 15 && frac < len(pow10)
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return 0, false
		}
		i, exact = j, false
	}
	start := s.i
	s.i = i
	if exact {
		// Fewer than 16 digits are exact in a float64, as is 10^frac for frac
		// up to 22, and one IEEE division rounds correctly: strconv takes this
		// path too, after more work to get here.
		v := float64(mant) / pow10[frac]
		if neg {
			v = -v
		}
		return v, true
	}
	v, err := strconv.ParseFloat(string(b[start:i]), 64)
	if err != nil {
		s.i = start
		return 0, false
	}
	return v, true
}

// numbers reads an array of numbers and appends them to dst (or only checks
// them, when keep is false).
func (s *jsonScan) numbers(dst []float64, keep bool) ([]float64, bool) {
	if !s.next('[') {
		return dst, false
	}
	if s.next(']') {
		return dst, true
	}
	for {
		v, ok := s.number()
		if !ok {
			return dst, false
		}
		if keep {
			dst = append(dst, v)
		}
		if s.i < len(s.b) && s.b[s.i] == ',' { // the usual case, before white space
			s.i++
			continue
		}
		if !s.next(',') {
			return dst, s.next(']')
		}
	}
}

// tensor reads a tensor's data as flattenFP32 takes it, an array of numbers or
// an array of such arrays, nested up to maxTensorRank deep, and appends its
// numbers to dst in order (or only checks them, when keep is false).
func (s *jsonScan) tensor(dst []float64, keep bool) ([]float64, bool) {
	return s.tensorAt(dst, keep, 1)
}

// maxTensorRank bounds the nesting tensor reads, and so its recursion: deeper
// data (which no model here takes) is left to encoding/json and its own limit.
const maxTensorRank = 16

func (s *jsonScan) tensorAt(dst []float64, keep bool, rank int) ([]float64, bool) {
	s.space()
	open := s.i
	if rank > maxTensorRank || !s.next('[') {
		return dst, false
	}
	if s.next(']') {
		return dst, true
	}
	if s.i < len(s.b) && s.b[s.i] != '[' {
		s.i = open
		return s.numbers(dst, keep)
	}
	for {
		var ok bool
		if dst, ok = s.tensorAt(dst, keep, rank+1); !ok {
			return dst, false
		}
		if !s.next(',') {
			return dst, s.next(']')
		}
	}
}

// pow10 holds the powers of ten that are exact in a float64.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// digits is the index of the first byte at or after i in b that is not a digit.
func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
