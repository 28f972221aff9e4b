package service

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	noJitter := func() float64 { return 0 }
	fullJitter := func() float64 { return 0.999999 }
	exp := Backoff{Kind: BackoffExponential, Base: time.Second, Max: 10 * time.Second}
	tests := []struct {
		name    string
		b       Backoff
		attempt int32
		rnd     func() float64
		want    time.Duration
	}{
		{"exponential first", exp, 1, noJitter, time.Second},
		{"exponential doubles", exp, 3, noJitter, 4 * time.Second},
		{"exponential capped", exp, 10, noJitter, 10 * time.Second},
		{"exponential huge attempt stays capped", exp, 5000, noJitter, 10 * time.Second},
		{"fixed", Backoff{Kind: BackoffFixed, Base: 3 * time.Second}, 7, noJitter, 3 * time.Second},
		{"jitter lowers the delay", Backoff{Kind: BackoffFixed, Base: 10 * time.Second, Jitter: 0.5}, 1, fullJitter, 5*time.Second + 10*time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.b.Delay(tt.attempt, tt.rnd)
			if diff := got - tt.want; diff < -time.Millisecond || diff > time.Millisecond {
				t.Fatalf("Delay(%d) = %v, want %v", tt.attempt, got, tt.want)
			}
		})
	}
}

func TestBackoffValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		b     Backoff
		field string // "" means valid
	}{
		{"zero is default", Backoff{}, ""},
		{"exponential ok", Backoff{Kind: BackoffExponential, Base: time.Second, Max: time.Minute, Jitter: 0.1}, ""},
		{"unknown kind", Backoff{Kind: 9, Base: time.Second}, "backoff.kind"},
		{"base zero", Backoff{Kind: BackoffFixed}, "backoff.base"},
		{"max below base", Backoff{Kind: BackoffExponential, Base: time.Minute, Max: time.Second}, "backoff.max"},
		{"jitter over one", Backoff{Kind: BackoffFixed, Base: time.Second, Jitter: 1.5}, "backoff.jitter"},
		{"params without kind", Backoff{Base: time.Second}, "backoff.kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.b.validate("backoff")
			if tt.field == "" {
				if err != nil {
					t.Fatalf("validate() = %v, want nil", err)
				}
				return
			}
			ve, ok := err.(*ValidationError)
			if !ok || ve.Field != tt.field {
				t.Fatalf("validate() = %v, want a ValidationError on %q", err, tt.field)
			}
		})
	}
}
