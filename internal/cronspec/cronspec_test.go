package cronspec

import (
	"testing"
	"time"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("LoadLocation(%q) = %v", name, err)
	}
	return loc
}

// fires returns the fire times of expr in (from, to], in UTC RFC 3339.
func fires(t *testing.T, expr string, loc *time.Location, from, to time.Time) []string {
	t.Helper()
	spec, err := Parse(expr, loc)
	if err != nil {
		t.Fatalf("Parse(%q) = %v", expr, err)
	}
	var out []string
	for at := spec.Next(from); !at.IsZero() && !at.After(to); at = spec.Next(at) {
		out = append(out, at.UTC().Format(time.RFC3339))
		if len(out) > 1000 {
			t.Fatal("runaway schedule")
		}
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDaylightSavingTransitions(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	berlin := mustLoad(t, "Europe/Berlin")
	day := func(loc *time.Location, y int, m time.Month, d int) (time.Time, time.Time) {
		return time.Date(y, m, d, 0, 0, 0, 0, loc).Add(-time.Second), time.Date(y, m, d+1, 0, 0, 0, 0, loc).Add(-time.Second)
	}
	nySpringFrom, nySpringTo := day(ny, 2024, time.March, 10)     // 02:00 EST -> 03:00 EDT
	nyFallFrom, nyFallTo := day(ny, 2024, time.November, 3)       // 02:00 EDT -> 01:00 EST
	beSpringFrom, beSpringTo := day(berlin, 2024, time.March, 31) // 02:00 CET -> 03:00 CEST
	beFallFrom, beFallTo := day(berlin, 2024, time.October, 27)   // 03:00 CEST -> 02:00 CET
	tests := []struct {
		name     string
		expr     string
		loc      *time.Location
		from, to time.Time
		want     []string
	}{
		{
			// 02:30 does not exist that night: it fires once, at 03:00 EDT.
			name: "NY spring: skipped tick fires once at the end of the gap",
			expr: "30 2 * * *", loc: ny, from: nySpringFrom, to: nySpringTo,
			want: []string{"2024-03-10T07:00:00Z"},
		},
		{
			// 01:30 happens twice (EDT, then EST): it fires at the first.
			name: "NY fall: repeated tick fires once at its first occurrence",
			expr: "30 1 * * *", loc: ny, from: nyFallFrom, to: nyFallTo,
			want: []string{"2024-11-03T05:30:00Z"},
		},
		{
			name: "NY spring: ticks around the gap",
			expr: "0,30 1-3 * * *", loc: ny, from: nySpringFrom, to: nySpringTo,
			// 01:00 EST, 01:30 EST, (02:00, 02:30 -> 03:00 EDT) with 03:00 EDT itself once, 03:30 EDT
			want: []string{"2024-03-10T06:00:00Z", "2024-03-10T06:30:00Z", "2024-03-10T07:00:00Z", "2024-03-10T07:30:00Z"},
		},
		{
			name: "NY fall: ticks around the repeated hour",
			expr: "0,30 0-2 * * *", loc: ny, from: nyFallFrom, to: nyFallTo,
			// 00:00 EDT, 00:30 EDT, 01:00 EDT, 01:30 EDT, (repeated 01:xx EST skipped), 02:00 EST, 02:30 EST
			want: []string{"2024-11-03T04:00:00Z", "2024-11-03T04:30:00Z", "2024-11-03T05:00:00Z", "2024-11-03T05:30:00Z", "2024-11-03T07:00:00Z", "2024-11-03T07:30:00Z"},
		},
		{
			name: "Berlin spring: skipped tick fires at 03:00 CEST",
			expr: "15 2 * * *", loc: berlin, from: beSpringFrom, to: beSpringTo,
			want: []string{"2024-03-31T01:00:00Z"},
		},
		{
			name: "Berlin fall: repeated 02:15 fires at its CEST occurrence",
			expr: "15 2 * * *", loc: berlin, from: beFallFrom, to: beFallTo,
			want: []string{"2024-10-27T00:15:00Z"},
		},
		{
			name: "daily at midnight in New York across a normal day",
			expr: "@daily", loc: ny, from: time.Date(2024, 6, 1, 0, 0, 0, 0, ny), to: time.Date(2024, 6, 3, 0, 0, 0, 0, ny),
			want: []string{"2024-06-02T04:00:00Z", "2024-06-03T04:00:00Z"},
		},
		{
			name: "optional seconds field",
			expr: "*/20 0 12 * * *", loc: time.UTC, from: time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC), to: time.Date(2024, 6, 1, 12, 1, 0, 0, time.UTC),
			want: []string{"2024-06-01T12:00:20Z", "2024-06-01T12:00:40Z"},
		},
		{
			name: "hourly",
			expr: "@hourly", loc: berlin, from: time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC), to: time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC),
			want: []string{"2024-06-01T11:00:00Z", "2024-06-01T12:00:00Z"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fires(t, tt.expr, tt.loc, tt.from, tt.to); !equal(got, tt.want) {
				t.Fatalf("fires = %v\nwant    %v", got, tt.want)
			}
		})
	}
}

func TestParseRefusals(t *testing.T) {
	for _, expr := range []string{"", "not cron", "61 * * * *", "* * * *", "CRON_TZ=UTC * * * * *", "@every 5m", "1 2 3 4 5 6 7"} {
		if _, err := Parse(expr, time.UTC); err == nil {
			t.Errorf("Parse(%q) = nil error, want one", expr)
		}
	}
}
