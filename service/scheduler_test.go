package service_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/queued-dev/queued/internal/cronspec"
	"github.com/queued-dev/queued/service"
	"github.com/queued-dev/queued/store"
	"github.com/queued-dev/queued/store/storetest"
)

// clock is a fake clock that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func parseCron(expr string, loc *time.Location) (service.ScheduleSpec, error) {
	s, err := cronspec.Parse(expr, loc)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// replica is one service instance with its own pool, as a server replica
// would have. Its background loops do not run: tests step it with FireDue.
type replica struct {
	svc   *service.Service
	store *store.Store
	pool  *pgxpool.Pool
}

type bundle struct {
	dbURL string
	clock *clock
	pool  *pgxpool.Pool // for inspecting rows
}

func setup(t *testing.T, start time.Time) (context.Context, *bundle) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	b := &bundle{dbURL: storetest.NewDatabase(t), clock: &clock{t: start}}
	b.pool = b.newPool(t, "inspect")
	return ctx, b
}

func (b *bundle) newPool(t *testing.T, app string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func (b *bundle) replica(t *testing.T, name string) *replica {
	t.Helper()
	pool := b.newPool(t, name)
	st := store.New(pool)
	svc, err := service.New(st, service.Config{Now: b.clock.Now, ParseCron: parseCron, ReplicaID: name})
	if err != nil {
		t.Fatal(err)
	}
	return &replica{svc: svc, store: st, pool: pool}
}

func upsert(t *testing.T, ctx context.Context, r *replica, sc service.Schedule) service.Schedule {
	t.Helper()
	if sc.Job.Queue == "" {
		sc.Job = service.JobTemplate{Queue: "cron", Name: "tick", Payload: []byte("p")}
	}
	out, err := r.svc.UpsertSchedule(ctx, sc)
	if err != nil {
		t.Fatalf("UpsertSchedule(%s) = %v", sc.Name, err)
	}
	return out
}

func fireDue(t *testing.T, ctx context.Context, r *replica) time.Time {
	t.Helper()
	next, err := r.svc.FireDue(ctx)
	if err != nil {
		t.Fatalf("FireDue() = %v", err)
	}
	return next
}

// ticks returns, per tick label, how many jobs schedule name enqueued.
func (b *bundle) ticks(t *testing.T, name string) map[string]int {
	t.Helper()
	rows, _ := b.pool.Query(context.Background(),
		`SELECT metadata->>'queued.tick', count(*) FROM queued_jobs WHERE metadata->>'queued.schedule' = $1 AND metadata ? 'queued.tick' GROUP BY 1`, name)
	out := map[string]int{}
	var label string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&label, &n}, func() error { out[label] = n; return nil }); err != nil {
		t.Fatalf("count ticks: %v", err)
	}
	return out
}

// tickList returns the ticks fired once each, in order, and fails on any
// tick fired more than once.
func (b *bundle) tickList(t *testing.T, name string) []string {
	t.Helper()
	var out []string
	for label, n := range b.ticks(t, name) {
		if n != 1 {
			t.Fatalf("schedule %s tick %s enqueued %d jobs, want 1", name, label, n)
		}
		out = append(out, label)
	}
	sort.Strings(out)
	return out
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func labels(ts ...time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.UTC().Format(time.RFC3339Nano)
	}
	return out
}

func wantTicks(t *testing.T, got []string, want ...time.Time) {
	t.Helper()
	w := labels(want...)
	if fmt.Sprint(got) != fmt.Sprint(w) {
		t.Fatalf("fired ticks = %v\nwant          %v", got, w)
	}
}

func TestSchedulesFireOnTime(t *testing.T) {
	t.Parallel()
	berlin, _ := time.LoadLocation("Europe/Berlin")
	start := utc("2024-06-01T00:00:30Z")
	tests := []struct {
		name, spec, zone string
		want             []time.Time
	}{
		{"minutely", "* * * * *", "", []time.Time{utc("2024-06-01T00:01:00Z"), utc("2024-06-01T00:02:00Z"), utc("2024-06-01T00:03:00Z")}},
		{"hourly", "@hourly", "", []time.Time{utc("2024-06-01T01:00:00Z"), utc("2024-06-01T02:00:00Z"), utc("2024-06-01T03:00:00Z")}},
		{"daily-berlin", "0 9 * * *", "Europe/Berlin", []time.Time{
			time.Date(2024, 6, 1, 9, 0, 0, 0, berlin), time.Date(2024, 6, 2, 9, 0, 0, 0, berlin), time.Date(2024, 6, 3, 9, 0, 0, 0, berlin)}},
		{"interval", "every 15m", "", []time.Time{utc("2024-06-01T00:15:00Z"), utc("2024-06-01T00:30:00Z"), utc("2024-06-01T00:45:00Z")}},
		{"seconds", "*/20 * * * * *", "", []time.Time{utc("2024-06-01T00:00:40Z"), utc("2024-06-01T00:01:00Z"), utc("2024-06-01T00:01:20Z")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, b := setup(t, start)
			r := b.replica(t, "r1")
			sc := upsert(t, ctx, r, service.Schedule{Name: tt.name, Spec: tt.spec, TimeZone: tt.zone})
			if !sc.NextFireAt.Equal(tt.want[0]) {
				t.Fatalf("NextFireAt = %v, want %v", sc.NextFireAt, tt.want[0])
			}
			for i, tick := range tt.want {
				b.clock.Set(tick.Add(-time.Second))
				if next := fireDue(t, ctx, r); !next.Equal(tick) {
					t.Fatalf("a second early: next = %v, want %v", next, tick)
				}
				wantTicks(t, b.tickList(t, tt.name), tt.want[:i]...)
				b.clock.Set(tick)
				fireDue(t, ctx, r)
				wantTicks(t, b.tickList(t, tt.name), tt.want[:i+1]...)
			}
		})
	}
}

func TestThreeReplicasNeverDuplicateATick(t *testing.T) {
	t.Parallel()
	start := utc("2024-06-01T00:00:00Z")
	ctx, b := setup(t, start)
	replicas := []*replica{b.replica(t, "r1"), b.replica(t, "r2"), b.replica(t, "r3")}
	specs := map[string]string{"every-second": "every 1s", "every-5s": "*/5 * * * * *", "minutely": "* * * * *", "every-7s": "every 7s"}
	for name, spec := range specs {
		upsert(t, ctx, replicas[0], service.Schedule{Name: name, Spec: spec, CatchUp: service.CatchUpAll})
	}
	// Move the clock in uneven steps, each replica firing twice per step,
	// all at once.
	now := start
	for step := range 90 {
		now = now.Add(time.Duration(1+step%3) * time.Second)
		b.clock.Set(now)
		var wg sync.WaitGroup
		errs := make(chan error, 2*len(replicas))
		for range 2 {
			for _, r := range replicas {
				wg.Go(func() {
					if _, err := r.svc.FireDue(ctx); err != nil {
						errs <- err
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("FireDue() = %v", err)
		}
	}
	for name, spec := range specs {
		var s service.ScheduleSpec
		if rest, ok := cutEvery(spec); ok {
			s = everySpec(rest)
		} else {
			s, _ = parseCron(spec, time.UTC)
		}
		var want []time.Time
		for tick := s.Next(start); !tick.After(now); tick = s.Next(tick) {
			want = append(want, tick)
		}
		wantTicks(t, b.tickList(t, name), want...) // each exactly once, none missing
	}
}

func cutEvery(spec string) (time.Duration, bool) {
	rest, ok := strings.CutPrefix(spec, "every ")
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(rest)
	return d, err == nil
}

// everySpec is the documented interval rule written out independently:
// multiples of the interval since the Unix epoch.
type everySpec time.Duration

func (e everySpec) Next(t time.Time) time.Time {
	d := time.Duration(e)
	epoch := time.Unix(0, 0)
	return epoch.Add((t.Sub(epoch)/d + 1) * d)
}

func TestReplicaKilledMidTickLosesNoTick(t *testing.T) {
	t.Parallel()
	start := utc("2024-06-01T00:00:30Z")
	ctx, b := setup(t, start)
	a, c := b.replica(t, "replica-a"), b.replica(t, "replica-c")
	upsert(t, ctx, a, service.Schedule{Name: "m", Spec: "* * * * *"})
	tick := utc("2024-06-01T00:01:00Z")
	b.clock.Set(tick)

	// Hold inserts into the job table so replica A stops in the middle of
	// its firing transaction: the schedule row locked, the job not yet in.
	blocker, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx)
	if _, err := blocker.Exec(ctx, `LOCK TABLE queued_jobs IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() { _, err := a.svc.FireDue(ctx); aDone <- err }()
	var pid int32
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := b.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = 'replica-a' AND wait_event_type = 'Lock'`).Scan(&pid)
		if err == nil {
			break
		}
		if !errors.Is(err, pgx.ErrNoRows) || time.Now().After(deadline) {
			t.Fatalf("replica A never blocked mid-tick: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// While A holds the tick, C skips the locked row and fires nothing.
	if next := fireDue(t, ctx, c); !next.Equal(tick) {
		t.Fatalf("C saw next tick %v, want the still-due %v", next, tick)
	}

	// A dies: its connection goes, its transaction with it.
	if _, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-aDone:
		if err == nil {
			t.Fatal("A's FireDue succeeded after its connection was killed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("A's FireDue did not return after its connection was killed")
	}
	// The database notices the death on its own time; wait until the
	// backend and its locks are gone, as a survivor would in production.
	deadline = time.Now().Add(10 * time.Second)
	for {
		var alive bool
		if err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, pid).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		if !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("killed backend did not exit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wantTicks(t, b.tickList(t, "m"))

	// The tick is still due; the surviving replica fires it, once.
	fireDue(t, ctx, c)
	fireDue(t, ctx, a)
	wantTicks(t, b.tickList(t, "m"), tick)
}

func TestCatchUpPolicies(t *testing.T) {
	t.Parallel()
	start := utc("2024-06-01T00:00:10Z")
	back := utc("2024-06-01T05:30:00Z") // down through ticks 01:00 .. 05:00
	hours := func(hs ...int) []time.Time {
		out := make([]time.Time, len(hs))
		for i, h := range hs {
			out[i] = start.Truncate(time.Hour).Add(time.Duration(h) * time.Hour)
		}
		return out
	}
	tests := []struct {
		name    string
		catchUp service.CatchUpPolicy
		window  time.Duration
		want    []time.Time
	}{
		{"skip", service.CatchUpSkip, 0, nil},
		{"one", service.CatchUpOne, 0, hours(5)},
		{"default-is-one", "", 0, hours(5)},
		{"all-within-window", service.CatchUpAll, 150 * time.Minute, hours(3, 4, 5)},
		{"all-default-window", service.CatchUpAll, 0, hours(1, 2, 3, 4, 5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, b := setup(t, start)
			r := b.replica(t, "r1")
			upsert(t, ctx, r, service.Schedule{Name: "h", Spec: "@hourly", CatchUp: tt.catchUp, CatchUpWindow: tt.window})
			b.clock.Set(back)
			if next := fireDue(t, ctx, r); !next.Equal(hours(6)[0]) {
				t.Fatalf("next after catching up = %v, want 06:00", next)
			}
			wantTicks(t, b.tickList(t, "h"), tt.want...)

			// A tick fired late but within the grace is on time under
			// every policy.
			b.clock.Set(hours(6)[0].Add(30 * time.Second))
			fireDue(t, ctx, r)
			wantTicks(t, b.tickList(t, "h"), append(tt.want, hours(6)...)...)
		})
	}
}

func TestOverlapPolicies(t *testing.T) {
	t.Parallel()
	start := utc("2024-06-01T00:00:30Z")
	minute := func(m int) time.Time { return start.Truncate(time.Minute).Add(time.Duration(m) * time.Minute) }
	for _, tt := range []struct {
		overlap service.OverlapPolicy
		want    []time.Time
	}{
		{service.OverlapAllow, []time.Time{minute(1), minute(2), minute(3)}},
		{service.OverlapSkip, []time.Time{minute(1), minute(3)}}, // 00:02 fell while 00:01's job was unfinished
	} {
		t.Run(string(tt.overlap), func(t *testing.T) {
			t.Parallel()
			ctx, b := setup(t, start)
			r := b.replica(t, "r1")
			upsert(t, ctx, r, service.Schedule{Name: "m", Spec: "* * * * *", Overlap: tt.overlap})
			b.clock.Set(minute(1))
			fireDue(t, ctx, r)
			b.clock.Set(minute(2))
			fireDue(t, ctx, r)

			// A worker takes and completes every job there is.
			claimed, err := r.store.ClaimJobs(ctx, service.ClaimParams{
				Queues: []string{"cron"}, Owners: []string{"w", "w", "w"},
				ExpiresAt: []time.Time{minute(3), minute(3), minute(3)}, Now: minute(2),
			})
			if err != nil || len(claimed) == 0 {
				t.Fatalf("ClaimJobs() = %d jobs, %v", len(claimed), err)
			}
			var acks []service.Completion
			for _, c := range claimed {
				acks = append(acks, service.Completion{LeaseRef: service.LeaseRef{JobID: c.Lease.Job.ID, Token: c.Lease.Token}})
			}
			if errs, err := r.store.CompleteJobs(ctx, acks, minute(2)); err != nil || errors.Join(errs...) != nil {
				t.Fatalf("CompleteJobs() = %v %v", errs, err)
			}
			b.clock.Set(minute(3))
			fireDue(t, ctx, r)
			wantTicks(t, b.tickList(t, "m"), tt.want...)
		})
	}
}

func TestDaylightSavingTransitionsFireOnce(t *testing.T) {
	t.Parallel()
	ny, _ := time.LoadLocation("America/New_York")
	tests := []struct {
		name     string
		spec     string
		from, to time.Time
		want     []time.Time
	}{
		{
			// 2024-03-10 02:30 does not exist in New York: it fires at 03:00 EDT.
			name: "spring forward", spec: "30 2 * * *",
			from: time.Date(2024, 3, 9, 12, 0, 0, 0, ny), to: time.Date(2024, 3, 11, 12, 0, 0, 0, ny),
			want: []time.Time{utc("2024-03-10T07:00:00Z"), utc("2024-03-11T06:30:00Z")},
		},
		{
			// 2024-11-03 01:30 happens twice in New York: it fires at the first.
			name: "fall back", spec: "30 1 * * *",
			from: time.Date(2024, 11, 2, 12, 0, 0, 0, ny), to: time.Date(2024, 11, 4, 12, 0, 0, 0, ny),
			want: []time.Time{utc("2024-11-03T05:30:00Z"), utc("2024-11-04T06:30:00Z")},
		},
		{
			name: "every 30 minutes through fall back", spec: "*/30 * * * *",
			from: time.Date(2024, 11, 3, 0, 10, 0, 0, ny), to: time.Date(2024, 11, 3, 2, 10, 0, 0, ny),
			// 00:30 EDT, 01:00 EDT, 01:30 EDT, then the repeated 01:00/01:30 EST do not fire again, 02:00 EST
			want: []time.Time{utc("2024-11-03T04:30:00Z"), utc("2024-11-03T05:00:00Z"), utc("2024-11-03T05:30:00Z"), utc("2024-11-03T07:00:00Z")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, b := setup(t, tt.from)
			r := b.replica(t, "r1")
			upsert(t, ctx, r, service.Schedule{Name: "dst", Spec: tt.spec, TimeZone: "America/New_York"})
			// Step through real time in 10-minute steps, as a scheduler
			// that wakes often would.
			for now := tt.from; !now.After(tt.to); now = now.Add(10 * time.Minute) {
				b.clock.Set(now)
				fireDue(t, ctx, r)
			}
			wantTicks(t, b.tickList(t, "dst"), tt.want...)
		})
	}
}

func TestScheduleEditsTakeEffectAtTheNextTick(t *testing.T) {
	t.Parallel()
	start := utc("2024-06-01T00:00:30Z")
	minute := func(m int) time.Time { return start.Truncate(time.Minute).Add(time.Duration(m) * time.Minute) }
	ctx, b := setup(t, start)
	r := b.replica(t, "r1")
	upsert(t, ctx, r, service.Schedule{Name: "e", Spec: "every 1m"})
	b.clock.Set(minute(1))
	fireDue(t, ctx, r)

	// Re-applying the schedule with a new template keeps the next tick; the
	// next job uses the new template.
	b.clock.Set(minute(1).Add(20 * time.Second))
	sc := upsert(t, ctx, r, service.Schedule{Name: "e", Spec: "every 1m", Job: service.JobTemplate{Queue: "other", Name: "tock"}})
	if !sc.NextFireAt.Equal(minute(2)) {
		t.Fatalf("NextFireAt after a template edit = %v, want %v", sc.NextFireAt, minute(2))
	}
	b.clock.Set(minute(2))
	fireDue(t, ctx, r)
	var queue, name string
	if err := b.pool.QueryRow(ctx, `SELECT queue, name FROM queued_jobs WHERE metadata->>'queued.tick' = $1`, labels(minute(2))[0]).Scan(&queue, &name); err != nil {
		t.Fatal(err)
	}
	if queue != "other" || name != "tock" {
		t.Fatalf("job after the edit = %s/%s, want other/tock", queue, name)
	}

	// A new timing counts from now.
	b.clock.Set(minute(2).Add(10 * time.Second))
	sc = upsert(t, ctx, r, service.Schedule{Name: "e", Spec: "*/5 * * * *", Job: service.JobTemplate{Queue: "other", Name: "tock"}})
	if !sc.NextFireAt.Equal(minute(5)) {
		t.Fatalf("NextFireAt after a timing edit = %v, want %v", sc.NextFireAt, minute(5))
	}
	for m := 3; m <= 5; m++ {
		b.clock.Set(minute(m))
		fireDue(t, ctx, r)
	}
	wantTicks(t, b.tickList(t, "e"), minute(1), minute(2), minute(5))
}

func TestPausedSchedulesDoNotFire(t *testing.T) {
	t.Parallel()
	start := utc("2024-06-01T00:00:30Z")
	minute := func(m int) time.Time { return start.Truncate(time.Minute).Add(time.Duration(m) * time.Minute) }
	ctx, b := setup(t, start)
	r := b.replica(t, "r1")
	upsert(t, ctx, r, service.Schedule{Name: "p", Spec: "* * * * *", CatchUp: service.CatchUpAll})
	if _, err := r.svc.PauseSchedule(ctx, "p"); err != nil {
		t.Fatalf("PauseSchedule() = %v", err)
	}
	for m := 1; m <= 3; m++ {
		b.clock.Set(minute(m))
		if next := fireDue(t, ctx, r); !next.IsZero() {
			t.Fatalf("next tick while the only schedule is paused = %v, want none", next)
		}
	}
	wantTicks(t, b.tickList(t, "p"))

	// Resumed, it fires from its next tick; the paused ticks stay unfired
	// even under catch-up all.
	b.clock.Set(minute(3).Add(10 * time.Second))
	sc, err := r.svc.ResumeSchedule(ctx, "p")
	if err != nil {
		t.Fatalf("ResumeSchedule() = %v", err)
	}
	if sc.Paused || !sc.NextFireAt.Equal(minute(4)) {
		t.Fatalf("resumed schedule paused=%v next=%v, want active at %v", sc.Paused, sc.NextFireAt, minute(4))
	}
	b.clock.Set(minute(4))
	fireDue(t, ctx, r)
	wantTicks(t, b.tickList(t, "p"), minute(4))

	// A trigger runs now without touching the ticks.
	id, err := r.svc.TriggerSchedule(ctx, "p")
	if err != nil || id <= 0 {
		t.Fatalf("TriggerSchedule() = %d, %v", id, err)
	}
	got, _, err := r.svc.GetSchedule(ctx, "p", 0)
	if err != nil || got.LastJobID != id || !got.NextFireAt.Equal(minute(5)) {
		t.Fatalf("after trigger: last job %d next %v (%v), want %d and %v", got.LastJobID, got.NextFireAt, err, id, minute(5))
	}
}

// A replica whose clock is behind can recompute a tick that another
// replica already fired (an edit at its "now"). The fired-tick record, not
// the job's unique key (which frees up once the job finishes), keeps that
// tick from firing twice.
func TestFiredTickNeverFiresAgain(t *testing.T) {
	t.Parallel()
	start := utc("2024-06-01T00:00:30Z")
	tick := utc("2024-06-01T00:01:00Z")
	ctx, b := setup(t, start)
	r := b.replica(t, "r1")
	upsert(t, ctx, r, service.Schedule{Name: "m", Spec: "* * * * *"})
	b.clock.Set(tick)
	fireDue(t, ctx, r)
	if _, err := b.pool.Exec(ctx, `UPDATE queued_jobs SET state = 'completed', finished_at = now() WHERE metadata->>'queued.schedule' = 'm'`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `UPDATE queued_schedules SET next_fire_at = $1 WHERE name = 'm'`, tick); err != nil {
		t.Fatal(err)
	}
	b.clock.Set(tick.Add(time.Second))
	fireDue(t, ctx, r)
	wantTicks(t, b.tickList(t, "m"), tick)
}

// TestLargeCatchUpFiresEveryTickOnce catches up more ticks than one firing
// transaction takes (many schedules, each over its per-firing chunk), so
// FireDue splits them over several batches, deferring schedules past the
// batch's tick budget: every tick in the window still fires exactly once.
func TestLargeCatchUpFiresEveryTickOnce(t *testing.T) {
	t.Parallel()
	start := utc("2024-06-01T00:00:00Z")
	ctx, b := setup(t, start)
	r := b.replica(t, "r1")
	const schedules = 12
	for i := range schedules {
		upsert(t, ctx, r, service.Schedule{Name: fmt.Sprintf("s%02d", i), Spec: "every 1s", CatchUp: service.CatchUpAll, CatchUpWindow: time.Hour})
	}
	back := start.Add(1500 * time.Second) // 1,500 ticks each, 18,000 in all
	b.clock.Set(back)
	if next := fireDue(t, ctx, r); !next.Equal(back.Add(time.Second)) {
		t.Fatalf("next after catching up = %v, want %v", next, back.Add(time.Second))
	}
	var want []time.Time
	for tick := start.Add(time.Second); !tick.After(back); tick = tick.Add(time.Second) {
		want = append(want, tick)
	}
	for i := range schedules {
		wantTicks(t, b.tickList(t, fmt.Sprintf("s%02d", i)), want...)
	}
}
