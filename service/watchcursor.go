package service

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Snapshot is a set of committed writer transactions, in PostgreSQL's
// pg_snapshot form: every transaction id below Xmin is in it, none at or
// above Xmax is, and of those in between all but the ones listed in Xip
// (sorted) are. A change is "seen" by a snapshot when the transaction that
// wrote it is in the set.
//
// Watch compares transactions this way, and never sequence numbers, because
// numbers taken before commit can commit out of order: a reader that
// remembered "up to number 100" could miss a number 99 that committed after
// it read. A snapshot names every transaction it has not seen.
type Snapshot struct {
	Xmin, Xmax uint64
	Xip        []uint64
}

// Visible reports whether xid is in the set.
func (s Snapshot) Visible(xid uint64) bool {
	if xid < s.Xmin {
		return true
	}
	if xid >= s.Xmax {
		return false
	}
	_, found := slices.BinarySearch(s.Xip, xid)
	return !found
}

// upTo is s restricted to transactions at most x.
func (s Snapshot) upTo(x uint64) Snapshot {
	if x+1 >= s.Xmax {
		return s
	}
	out := Snapshot{Xmax: x + 1}
	for _, y := range s.Xip {
		if y <= x {
			out.Xip = append(out.Xip, y)
		}
	}
	out.Xmin = out.Xmax
	if len(out.Xip) > 0 {
		out.Xmin = out.Xip[0]
	}
	return out
}

// union is the set of transactions in a or b, as a snapshot.
func union(a, b Snapshot) Snapshot {
	out := Snapshot{Xmax: max(a.Xmax, b.Xmax)}
	// Not in the union: listed by both, or listed by one and beyond the
	// other's horizon.
	for _, y := range a.Xip {
		if !b.Visible(y) {
			out.Xip = append(out.Xip, y)
		}
	}
	for _, y := range b.Xip {
		if !a.Visible(y) && !slices.Contains(a.Xip, y) {
			out.Xip = append(out.Xip, y)
		}
	}
	slices.Sort(out.Xip)
	out.Xmin = out.Xmax
	if len(out.Xip) > 0 {
		out.Xmin = out.Xip[0]
	}
	return out
}

// String is PostgreSQL's pg_snapshot text form, xmin:xmax:xip,...
func (s Snapshot) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d:%d:", s.Xmin, s.Xmax)
	for i, x := range s.Xip {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(x, 10))
	}
	return b.String()
}

// ParseSnapshot reads the pg_snapshot text form.
func ParseSnapshot(text string) (Snapshot, error) {
	parts := strings.Split(text, ":")
	if len(parts) != 3 {
		return Snapshot{}, fmt.Errorf("snapshot %q: want xmin:xmax:xip", text)
	}
	var s Snapshot
	var err error
	if s.Xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: xmin: %w", text, err)
	}
	if s.Xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: xmax: %w", text, err)
	}
	if parts[2] != "" {
		for _, f := range strings.Split(parts[2], ",") {
			x, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return Snapshot{}, fmt.Errorf("snapshot %q: xip: %w", text, err)
			}
			s.Xip = append(s.Xip, x)
		}
	}
	if s.Xmin > s.Xmax || !slices.IsSorted(s.Xip) {
		return Snapshot{}, fmt.Errorf("snapshot %q: not ordered", text)
	}
	for _, x := range s.Xip {
		if x < s.Xmin || x >= s.Xmax {
			return Snapshot{}, fmt.Errorf("snapshot %q: xip outside [xmin, xmax)", text)
		}
	}
	return s, nil
}

// Cursor is how far a watcher has read the stream of job changes: every
// change written by a transaction in Seen, plus the changes that
// transaction PartXID made to jobs with id <= PartID (a transaction's
// changes are read in job id order, and a reader may stop inside one).
// At is when the cursor's snapshot was read; cursors older than the watch
// retention are refused because the changes they lack may be gone.
type Cursor struct {
	Seen    Snapshot
	PartXID uint64
	PartID  int64
	At      time.Time
}

// Covers reports whether the change that transaction xid made to job id is
// behind the cursor.
func (c Cursor) Covers(xid uint64, id int64) bool {
	return c.Seen.Visible(xid) || (xid == c.PartXID && id <= c.PartID)
}

// advance moves c past the change (xid, id) of a batch read in snapshot r,
// given that every change of that batch ordered before it by (xid, id) has
// been read too. whole says it was the last change xid made.
func (c Cursor) advance(r Snapshot, xid uint64, id int64, whole bool) Cursor {
	// At stays: a transaction the cursor has not seen committed after
	// c.At, but not necessarily after r was read.
	out := Cursor{At: c.At}
	if whole {
		out.Seen = union(c.Seen, r.upTo(xid))
	} else {
		out.Seen = c.Seen
		if xid > 0 {
			out.Seen = union(c.Seen, r.upTo(xid-1))
		}
		out.PartXID, out.PartID = xid, id
	}
	if out.PartXID == 0 && c.PartXID != 0 && !out.Seen.Visible(c.PartXID) {
		out.PartXID, out.PartID = c.PartXID, c.PartID
	}
	return out
}

// absorb moves c past every change visible in r: a batch read in r came
// back complete.
func (c Cursor) absorb(r Snapshot, at time.Time) Cursor {
	out := Cursor{Seen: union(c.Seen, r), At: c.At}
	if at.After(out.At) {
		out.At = at
	}
	if c.PartXID != 0 && !out.Seen.Visible(c.PartXID) {
		out.PartXID, out.PartID = c.PartXID, c.PartID
	}
	return out
}

// cursorVersion prefixes the text form so it can change later.
const cursorVersion = "c1"

// String is the cursor's text form, which clients treat as opaque:
// c1.<unix ms>.<xmin:xmax:xip>.<part xid>.<part id>
func (c Cursor) String() string {
	return fmt.Sprintf("%s.%d.%s.%d.%d", cursorVersion, c.At.UnixMilli(), c.Seen, c.PartXID, c.PartID)
}

// ParseCursor reads a cursor's text form.
func ParseCursor(text string) (Cursor, error) {
	parts := strings.Split(text, ".")
	if len(parts) != 5 || parts[0] != cursorVersion {
		return Cursor{}, invalid("cursor", "%q is not a cursor this server issued", text)
	}
	ms, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return Cursor{}, invalid("cursor", "%q: bad time", text)
	}
	seen, err := ParseSnapshot(parts[2])
	if err != nil {
		return Cursor{}, invalid("cursor", "%q: %v", text, err)
	}
	px, err1 := strconv.ParseUint(parts[3], 10, 64)
	pid, err2 := strconv.ParseInt(parts[4], 10, 64)
	if err1 != nil || err2 != nil {
		return Cursor{}, invalid("cursor", "%q: bad position", text)
	}
	return Cursor{Seen: seen, PartXID: px, PartID: pid, At: time.UnixMilli(ms)}, nil
}
