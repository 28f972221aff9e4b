package service

import (
	"cmp"
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
// change written by a transaction in Seen, plus, for each transaction it
// stopped inside (Parts), that transaction's changes to jobs with id up to
// the part's. A transaction's changes are read in job id order; more than
// one can be open at once when a lower transaction id commits late.
// At is when the cursor's snapshot was read; cursors older than the watch
// retention are refused because the changes they lack may be gone.
type Cursor struct {
	Seen  Snapshot
	Parts []Part
	At    time.Time
}

// Part says that the changes transaction XID made to jobs with id <= ID
// have been read.
type Part struct {
	XID uint64
	ID  int64
}

// Covers reports whether the change that transaction xid made to job id is
// behind the cursor.
func (c Cursor) Covers(xid uint64, id int64) bool {
	if c.Seen.Visible(xid) {
		return true
	}
	for _, p := range c.Parts {
		if p.XID == xid {
			return id <= p.ID
		}
	}
	return false
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
	}
	out.Parts = keepParts(c.Parts, out.Seen, xid)
	if !whole {
		out.Parts = append(out.Parts, Part{XID: xid, ID: id})
		slices.SortFunc(out.Parts, func(a, b Part) int { return cmp.Compare(a.XID, b.XID) })
	}
	return out
}

// keepParts drops the parts that seen covers whole, and the part of xid.
func keepParts(parts []Part, seen Snapshot, xid uint64) []Part {
	var out []Part
	for _, p := range parts {
		if p.XID != xid && !seen.Visible(p.XID) {
			out = append(out, p)
		}
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
	out.Parts = keepParts(c.Parts, out.Seen, 0)
	return out
}

// cursorVersion prefixes the text form so it can change later.
const cursorVersion = "c1"

// String is the cursor's text form, which clients treat as opaque:
// c1.<unix ms>.<xmin:xmax:xip>.<xid:id,...>
func (c Cursor) String() string {
	var parts strings.Builder
	for i, p := range c.Parts {
		if i > 0 {
			parts.WriteByte(',')
		}
		fmt.Fprintf(&parts, "%d:%d", p.XID, p.ID)
	}
	return fmt.Sprintf("%s.%d.%s.%s", cursorVersion, c.At.UnixMilli(), c.Seen, parts.String())
}

// ParseCursor reads a cursor's text form.
func ParseCursor(text string) (Cursor, error) {
	fields := strings.Split(text, ".")
	if len(fields) != 4 || fields[0] != cursorVersion {
		return Cursor{}, invalid("cursor", "%q is not a cursor this server issued", text)
	}
	ms, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return Cursor{}, invalid("cursor", "%q: bad time", text)
	}
	seen, err := ParseSnapshot(fields[2])
	if err != nil {
		return Cursor{}, invalid("cursor", "%q: %v", text, err)
	}
	c := Cursor{Seen: seen, At: time.UnixMilli(ms)}
	if fields[3] != "" {
		for _, f := range strings.Split(fields[3], ",") {
			xs, ids, ok := strings.Cut(f, ":")
			x, err1 := strconv.ParseUint(xs, 10, 64)
			id, err2 := strconv.ParseInt(ids, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				return Cursor{}, invalid("cursor", "%q: bad position %q", text, f)
			}
			c.Parts = append(c.Parts, Part{XID: x, ID: id})
		}
	}
	return c, nil
}
