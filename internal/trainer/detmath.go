package trainer

import (
	"math"
	"math/rand/v2"
)

// The trainer promises the same bytes for the same seed on every amd64 machine.
// math.Exp does not: on amd64 it takes an FMA path when the CPU has one, which
// rounds differently. So training uses exp below (the portable algorithm Go
// itself falls back to, from FreeBSD's e_exp.c), and normal draws use Box–Muller
// over math.Log, math.Sqrt and math.Cos, whose amd64 code does not vary by CPU.

func exp(x float64) float64 {
	const (
		ln2Hi     = 6.93147180369123816490e-01
		ln2Lo     = 1.90821492927058770002e-10
		log2e     = 1.44269504088896338700e+00
		overflow  = 7.09782712893383973096e+02
		underflow = -7.45133219101941108420e+02
		nearZero  = 1.0 / (1 << 28)
	)
	switch {
	case math.IsNaN(x):
		return x
	case x > overflow:
		return math.Inf(1)
	case x < underflow:
		return 0
	case -nearZero < x && x < nearZero:
		return 1 + x
	}
	var k int
	switch {
	case x < 0:
		k = int(log2e*x - 0.5)
	case x > 0:
		k = int(log2e*x + 0.5)
	}
	hi := x - float64(k)*ln2Hi
	lo := float64(k) * ln2Lo
	const (
		p1 = 1.66666666666666657415e-01
		p2 = -2.77777777770155933842e-03
		p3 = 6.61375632143793436117e-05
		p4 = -1.65339022054652515390e-06
		p5 = 4.13813679705723846039e-08
	)
	r := hi - lo
	t := r * r
	c := r - t*(p1+t*(p2+t*(p3+t*(p4+t*p5))))
	y := 1 - ((lo - (r*c)/(2-c)) - hi)
	return math.Ldexp(y, k)
}

func sigmoid(v float64) float64 { return 1 / (1 + exp(-v)) }

// normal draws from N(0,1) by Box–Muller.
func normal(rng *rand.Rand) float64 {
	u1 := 1 - rng.Float64() // (0,1]
	u2 := rng.Float64()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}
