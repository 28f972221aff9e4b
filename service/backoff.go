package service

import (
	"math"
	"math/rand/v2"
	"time"
)

// BackoffKind selects the retry delay formula.
type BackoffKind int

// Backoff kinds. The zero value means "use the server default".
const (
	BackoffDefault BackoffKind = iota
	BackoffExponential
	BackoffFixed
)

// Backoff says how long a failed job waits before its next attempt.
type Backoff struct {
	Kind   BackoffKind   `json:"kind"`
	Base   time.Duration `json:"base"`
	Max    time.Duration `json:"max"`
	Jitter float64       `json:"jitter"`
}

// DefaultBackoff is what a job gets when it names no backoff: exponential
// from one second, capped at an hour, with a fifth of each delay randomized
// so that jobs failing together do not retry in lockstep.
var DefaultBackoff = Backoff{Kind: BackoffExponential, Base: time.Second, Max: time.Hour, Jitter: 0.2}

// Delay returns the wait before the attempt after `attempt` (1-based: the
// delay after the first failure is Delay(1)). rnd returns a float in [0, 1).
func (b Backoff) Delay(attempt int32, rnd func() float64) time.Duration {
	if rnd == nil {
		rnd = rand.Float64
	}
	var d time.Duration
	switch b.Kind {
	case BackoffFixed:
		d = b.Base
	default:
		exp := math.Pow(2, float64(max(attempt, 1)-1))
		f := float64(b.Base) * exp
		if b.Max > 0 && f > float64(b.Max) {
			f = float64(b.Max)
		}
		if f > math.MaxInt64/2 {
			f = math.MaxInt64 / 2
		}
		d = time.Duration(f)
	}
	if b.Jitter > 0 {
		d -= time.Duration(float64(d) * b.Jitter * rnd())
	}
	return d
}

func (b Backoff) validate(field string) error {
	switch b.Kind {
	case BackoffDefault:
		if b.Base != 0 || b.Max != 0 || b.Jitter != 0 {
			return invalid(field+".kind", "must be set when base, max or jitter is")
		}
		return nil
	case BackoffExponential, BackoffFixed:
	default:
		return invalid(field+".kind", "unknown backoff kind %d", b.Kind)
	}
	if b.Base <= 0 {
		return invalid(field+".base", "must be positive")
	}
	if b.Max < 0 {
		return invalid(field+".max", "must not be negative")
	}
	if b.Kind == BackoffExponential && b.Max != 0 && b.Max < b.Base {
		return invalid(field+".max", "must be at least base")
	}
	if b.Jitter < 0 || b.Jitter > 1 || math.IsNaN(b.Jitter) {
		return invalid(field+".jitter", "must be between 0 and 1")
	}
	return nil
}

func (b Backoff) withDefaults() Backoff {
	if b.Kind == BackoffDefault {
		return DefaultBackoff
	}
	return b
}
