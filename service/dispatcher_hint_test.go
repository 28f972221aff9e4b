package service

import "testing"

func TestNextClaimHint(t *testing.T) {
	tests := []struct {
		name                    string
		prev, asked, got, limit int
		want                    int
	}{
		{"full claim doubles", 16, 16, 16, 1000, 32},
		{"full claim stops at the limit", 800, 800, 800, 1000, 1000},
		{"full claim of few free slots keeps the hint", 1000, 5, 5, 1000, 1000},
		{"short claim sizes to twice what came", 512, 512, 3, 1000, 16},
		{"short claim with many", 512, 512, 200, 1000, 400},
		{"empty claim keeps the minimum", 64, 64, 0, 1000, claimHintMin},
		{"limit below the minimum wins", 4, 4, 4, 4, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextClaimHint(tt.prev, tt.asked, tt.got, tt.limit); got != tt.want {
				t.Fatalf("nextClaimHint(%d, %d, %d, %d) = %d, want %d", tt.prev, tt.asked, tt.got, tt.limit, got, tt.want)
			}
		})
	}
}
