// Package cronspec parses cron expressions and computes their fire times in a
// time zone, with one rule for daylight-saving transitions (see Spec.Next).
//
// Parsing is github.com/robfig/cron/v3's: five fields, an optional leading
// seconds field, and the @yearly/@monthly/@weekly/@daily/@midnight/@hourly
// shorthands. The fire times are not robfig's: robfig evaluates the fields
// on the zone's clock directly, which drops a tick that a spring-forward
// skips and fires twice a tick that a fall-back repeats. Here the fields are
// evaluated on the wall clock (a calendar with no transitions) and each
// matching wall-clock time is then mapped to exactly one instant.
package cronspec

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Spec is a parsed cron expression bound to a time zone.
type Spec struct {
	wall *cron.SpecSchedule // evaluated in UTC, which has no transitions: UTC fields are wall-clock fields
	loc  *time.Location
}

// Parse parses expr for the time zone loc. The zone is a separate setting,
// so a CRON_TZ= or TZ= prefix is refused rather than silently overriding it;
// @every is refused because fixed intervals are the caller's "every 15m".
func Parse(expr string, loc *time.Location) (*Spec, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, errors.New("empty cron expression")
	}
	if loc == nil {
		return nil, errors.New("no time zone")
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, errors.New("a time zone prefix is not allowed in the expression: set the time zone separately")
	}
	if strings.HasPrefix(expr, "@every") {
		return nil, errors.New("@every is not a cron expression: use \"every <duration>\"")
	}
	s, err := parser.Parse(expr)
	if err != nil {
		return nil, err
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("unsupported cron expression %q", expr)
	}
	wall := *spec
	wall.Location = time.UTC
	return &Spec{wall: &wall, loc: loc}, nil
}

// Next returns the first fire time strictly after t, or the zero time if
// there is none within five years.
//
// The daylight-saving rule: every wall-clock time that matches the
// expression fires exactly once.
//   - A wall-clock time that a spring-forward skips (02:30 on the night
//     clocks jump from 02:00 to 03:00) fires at the end of the gap, the first
//     instant after the jump (03:00 new time). Several skipped times that land
//     on the same instant fire once.
//   - A wall-clock time that a fall-back repeats (01:30 on the night clocks
//     go from 02:00 back to 01:00) fires at its first occurrence only.
func (s *Spec) Next(t time.Time) time.Time {
	// Every wall-clock time at or before t's earliest possible wall reading
	// maps to an instant at or before t (see the package tests), so the
	// search starts there; mapped instants never decrease as wall-clock
	// times increase, so the first one after t is the answer.
	minOff := minOffset(s.loc, t)
	wall := wallTime(t, minOff)
	for range 100_000 {
		wall = s.wall.Next(wall)
		if wall.IsZero() {
			return time.Time{}
		}
		if at := Instant(wall, s.loc); at.After(t) {
			return at
		}
	}
	return time.Time{}
}

// Instant maps a wall-clock time (its UTC fields read as wall-clock fields)
// to the instant it names in loc, under the rule of Spec.Next: a time in a
// gap maps to the end of the gap, a repeated time to its first occurrence.
func Instant(wall time.Time, loc *time.Location) time.Time {
	var first, latest time.Time
	for _, probe := range []time.Duration{-36 * time.Hour, 0, 36 * time.Hour} {
		_, off := wall.Add(probe).In(loc).Zone()
		cand := wall.Add(-time.Duration(off) * time.Second)
		if sameOffset(cand, loc, off) && (first.IsZero() || cand.Before(first)) {
			first = cand
		}
		if cand.After(latest) {
			latest = cand
		}
	}
	if !first.IsZero() {
		return first.In(loc)
	}
	// A gap: the candidate computed with the offset from before the jump
	// lies after it, in the new offset; that zone's start is the jump.
	start, _ := latest.In(loc).ZoneBounds()
	if start.IsZero() {
		return latest.In(loc)
	}
	return start.In(loc)
}

// wallTime is the wall-clock reading of instant t at UTC offset off, as a
// UTC time.
func wallTime(t time.Time, offSeconds int) time.Time {
	return t.UTC().Add(time.Duration(offSeconds) * time.Second)
}

func sameOffset(t time.Time, loc *time.Location, off int) bool {
	_, o := t.In(loc).Zone()
	return o == off
}

// minOffset is the smallest UTC offset loc uses within 36 hours of t,
// enough to cover any transition near t.
func minOffset(loc *time.Location, t time.Time) int {
	m := 0
	for i, probe := range []time.Duration{-36 * time.Hour, 0, 36 * time.Hour} {
		_, off := t.Add(probe).In(loc).Zone()
		if i == 0 || off < m {
			m = off
		}
	}
	return m
}
