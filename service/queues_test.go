package service

import (
	"testing"
	"time"
)

func TestBucketNextToken(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	limit := RateLimit{Max: 20, Per: 500 * time.Millisecond} // a token per 25ms
	tests := []struct {
		name string
		b    Bucket
		want time.Duration
	}{
		{"no limit", Bucket{Tokens: 0}, 0},
		{"a whole token", Bucket{Limit: limit, Tokens: 1, RefilledAt: now}, 0},
		{"empty", Bucket{Limit: limit, Tokens: 0, RefilledAt: now}, 25 * time.Millisecond},
		{"most of a token", Bucket{Limit: limit, Tokens: 0.8, RefilledAt: now}, 5 * time.Millisecond},
		{"bucket clock ahead", Bucket{Limit: limit, Tokens: 0, RefilledAt: now.Add(time.Second)}, time.Second + 25*time.Millisecond},
		{"bucket clock behind", Bucket{Limit: limit, Tokens: 0.5, RefilledAt: now.Add(-time.Second)}, 12500 * time.Microsecond},
	}
	for _, tt := range tests {
		got := tt.b.nextToken(now)
		if d := got - tt.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("%s: nextToken() = %v, want %v", tt.name, got, tt.want)
		}
	}
}
