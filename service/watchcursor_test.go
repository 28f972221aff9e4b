package service

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// fakeDB models what Watch relies on: transactions get increasing ids,
// commit in any order, and a snapshot lists the ones still in progress.
type fakeDB struct {
	next       uint64
	inProgress []uint64
	rows       []Change // committed rows, one per change
	pending    map[uint64][]Change
}

func (db *fakeDB) begin(rng *rand.Rand, nextID *int64) uint64 {
	x := db.next
	db.next++
	db.inProgress = append(db.inProgress, x)
	for range 1 + rng.IntN(3) {
		*nextID++
		db.pending[x] = append(db.pending[x], Change{XID: x, Job: Job{ID: *nextID}})
	}
	return x
}

func (db *fakeDB) commit(x uint64) {
	db.inProgress = slices.DeleteFunc(db.inProgress, func(y uint64) bool { return y == x })
	db.rows = append(db.rows, db.pending[x]...)
	delete(db.pending, x)
}

func (db *fakeDB) snapshot() Snapshot {
	s := Snapshot{Xmax: db.next, Xip: slices.Sorted(slices.Values(db.inProgress))}
	s.Xmin = s.Xmax
	if len(s.Xip) > 0 {
		s.Xmin = s.Xip[0]
	}
	return s
}

// read is ReadChanges: the committed rows the cursor does not cover, in
// (xid, id) order, up to limit.
func (db *fakeDB) read(c Cursor, limit int) ChangeBatch {
	var out []Change
	for _, r := range db.rows {
		if !c.Covers(r.XID, r.Job.ID) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Change) int {
		if a.XID != b.XID {
			return int(a.XID) - int(b.XID)
		}
		return int(a.Job.ID - b.Job.ID)
	})
	complete := len(out) <= limit
	if !complete {
		out = out[:limit]
	}
	return ChangeBatch{Changes: out, Snapshot: db.snapshot(), Complete: complete && len(out) < limit}
}

// A reader that follows transactions committing out of order, reads in
// small batches and keeps restarting from the cursor of the last change it
// got, sees every change exactly once.
func TestCursorDeliversEveryChangeOnceUnderOutOfOrderCommits(t *testing.T) {
	t.Parallel()
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		db := &fakeDB{next: 100, pending: map[uint64][]Change{}}
		var nextID int64
		cur := Cursor{Seen: db.snapshot()}
		seen := map[int64]int{}
		for step := 0; step < 300; step++ {
			switch op := rng.IntN(4); {
			case op == 0 || len(db.inProgress) == 0:
				db.begin(rng, &nextID)
			case op == 1:
				db.commit(db.inProgress[rng.IntN(len(db.inProgress))])
			default:
				b := db.read(cur, 1+rng.IntN(4))
				stopAt := len(b.Changes)
				if rng.IntN(3) == 0 && stopAt > 0 {
					stopAt = rng.IntN(stopAt) // disconnect part way
				}
				for i, c := range b.Changes[:stopAt] {
					whole := b.Complete
					if i+1 < len(b.Changes) {
						whole = b.Changes[i+1].XID != c.XID
					}
					cur = cur.advance(b.Snapshot, c.XID, c.Job.ID, whole)
					seen[c.Job.ID]++
				}
				if stopAt == len(b.Changes) && b.Complete {
					cur = cur.absorb(b.Snapshot, time.Time{})
				}
				// Restart from the text form, as a client would.
				parsed, err := ParseCursor(cur.String())
				if err != nil {
					t.Fatalf("seed %d: ParseCursor(%s) = %v", seed, cur, err)
				}
				cur = parsed
			}
		}
		for len(db.inProgress) > 0 {
			db.commit(db.inProgress[0])
		}
		for {
			b := db.read(cur, 1000)
			for _, c := range b.Changes {
				seen[c.Job.ID]++
			}
			cur = cur.absorb(b.Snapshot, time.Time{})
			if b.Complete {
				break
			}
		}
		for _, r := range db.rows {
			if seen[r.Job.ID] != 1 {
				t.Fatalf("seed %d: change to job %d by xid %d seen %d times, want once", seed, r.Job.ID, r.XID, seen[r.Job.ID])
			}
		}
	}
}

func TestSnapshotUnionAndVisibility(t *testing.T) {
	t.Parallel()
	a := Snapshot{Xmin: 10, Xmax: 20, Xip: []uint64{10, 15}}
	b := Snapshot{Xmin: 15, Xmax: 30, Xip: []uint64{15, 25}}
	u := union(a, b)
	for x := uint64(0); x < 40; x++ {
		if got, want := u.Visible(x), a.Visible(x) || b.Visible(x); got != want {
			t.Errorf("union(%v, %v).Visible(%d) = %v, want %v", a, b, x, got, want)
		}
	}
	r := b.upTo(22)
	for x := uint64(0); x < 40; x++ {
		if got, want := r.Visible(x), b.Visible(x) && x <= 22; got != want {
			t.Errorf("%v.upTo(22).Visible(%d) = %v, want %v", b, x, got, want)
		}
	}
	for _, text := range []string{"", "1:2", "5:3:", "1:9:12", "1:9:4,3", "x:1:"} {
		if _, err := ParseSnapshot(text); err == nil {
			t.Errorf("ParseSnapshot(%q) = nil error, want one", text)
		}
	}
}
