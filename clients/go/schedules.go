package queued

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// CatchUp says what a schedule does with ticks missed while no server ran.
type CatchUp string

// Catch-up policies; the empty value is the server default (CatchUpOne).
const (
	CatchUpDefault CatchUp = ""
	CatchUpSkip    CatchUp = "skip" // drop missed ticks
	CatchUpOne     CatchUp = "one"  // one job for all missed ticks
	CatchUpAll     CatchUp = "all"  // one job per missed tick within CatchUpWindow
)

// Overlap says whether a tick fires while the previous job is unfinished.
type Overlap string

// Overlap policies; the empty value is the server default (OverlapAllow).
const (
	OverlapDefault Overlap = ""
	OverlapAllow   Overlap = "allow"
	OverlapSkip    Overlap = "skip" // drop the tick while the previous job is unfinished
)

// ScheduleJob is the job a schedule enqueues at each tick.
type ScheduleJob struct {
	Queue       string            `json:"queue"`
	Name        string            `json:"name"`
	Payload     []byte            `json:"payload,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Priority    int32             `json:"priority"`
	MaxAttempts int32             `json:"max_attempts"` // 0: the server default
	Backoff     BackoffPolicy     `json:"backoff"`
}

// Schedule is a named, repeating job. Spec is a cron expression (five
// fields, or six with leading seconds, or @hourly, @daily, ...) read in
// TimeZone (IANA; empty is UTC), or "every <duration>" such as "every 15m".
// The fields from NextFireAt on are kept by the server. See the server's
// docs/schedules.md for the daylight-saving rule.
type Schedule struct {
	Name          string        `json:"name"`
	Spec          string        `json:"spec"`
	TimeZone      string        `json:"time_zone,omitempty"`
	Job           ScheduleJob   `json:"job"`
	StartAt       time.Time     `json:"start_at,omitzero"`
	EndAt         time.Time     `json:"end_at,omitzero"`
	Paused        bool          `json:"paused"`
	CatchUp       CatchUp       `json:"catch_up,omitempty"`
	CatchUpWindow time.Duration `json:"catch_up_window,omitempty"`
	Overlap       Overlap       `json:"overlap,omitempty"`

	NextFireAt time.Time `json:"next_fire_at,omitzero"` // zero when paused or ended
	LastFireAt time.Time `json:"last_fire_at,omitzero"`
	LastJobID  int64     `json:"last_job_id,omitempty"`
	CreatedAt  time.Time `json:"created_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
}

// UpsertSchedule creates the schedule or replaces the one with the same
// name, and returns it as stored. Re-applying an unchanged schedule keeps
// its next tick, so calling this on every deploy is safe.
func (c *Client) UpsertSchedule(ctx context.Context, s Schedule) (*Schedule, error) {
	resp, err := c.sched.UpsertSchedule(ctx, &queuedv1.UpsertScheduleRequest{Schedule: s.toProto()})
	if err != nil {
		return nil, fmt.Errorf("upsert schedule %q: %w", s.Name, err)
	}
	return scheduleFromProto(resp.GetSchedule()), nil
}

// GetSchedule returns a schedule and up to next of its upcoming fire times
// (0 means the server's default of 5).
func (c *Client) GetSchedule(ctx context.Context, name string, next int) (*Schedule, []time.Time, error) {
	resp, err := c.sched.GetSchedule(ctx, &queuedv1.GetScheduleRequest{Name: name, NextCount: int32(next)})
	if err != nil {
		return nil, nil, fmt.Errorf("get schedule %q: %w", name, err)
	}
	times := make([]time.Time, len(resp.GetNextFireTimes()))
	for i, t := range resp.GetNextFireTimes() {
		times[i] = t.AsTime()
	}
	return scheduleFromProto(resp.GetSchedule()), times, nil
}

// ListSchedules returns every schedule, by name.
func (c *Client) ListSchedules(ctx context.Context) ([]*Schedule, error) {
	resp, err := c.sched.ListSchedules(ctx, &queuedv1.ListSchedulesRequest{})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	out := make([]*Schedule, len(resp.GetSchedules()))
	for i, p := range resp.GetSchedules() {
		out[i] = scheduleFromProto(p)
	}
	return out, nil
}

// PauseSchedule stops a schedule's ticks until ResumeSchedule.
func (c *Client) PauseSchedule(ctx context.Context, name string) (*Schedule, error) {
	resp, err := c.sched.PauseSchedule(ctx, &queuedv1.PauseScheduleRequest{Name: name})
	if err != nil {
		return nil, fmt.Errorf("pause schedule %q: %w", name, err)
	}
	return scheduleFromProto(resp.GetSchedule()), nil
}

// ResumeSchedule lets a paused schedule fire again from its next tick;
// ticks that fell in the pause do not fire.
func (c *Client) ResumeSchedule(ctx context.Context, name string) (*Schedule, error) {
	resp, err := c.sched.ResumeSchedule(ctx, &queuedv1.ResumeScheduleRequest{Name: name})
	if err != nil {
		return nil, fmt.Errorf("resume schedule %q: %w", name, err)
	}
	return scheduleFromProto(resp.GetSchedule()), nil
}

// DeleteSchedule removes a schedule; jobs it enqueued stay.
func (c *Client) DeleteSchedule(ctx context.Context, name string) error {
	if _, err := c.sched.DeleteSchedule(ctx, &queuedv1.DeleteScheduleRequest{Name: name}); err != nil {
		return fmt.Errorf("delete schedule %q: %w", name, err)
	}
	return nil
}

// TriggerSchedule enqueues the schedule's job now, paused or not, without
// moving its ticks, and returns the job's id.
func (c *Client) TriggerSchedule(ctx context.Context, name string) (int64, error) {
	resp, err := c.sched.TriggerSchedule(ctx, &queuedv1.TriggerScheduleRequest{Name: name})
	if err != nil {
		return 0, fmt.Errorf("trigger schedule %q: %w", name, err)
	}
	return resp.GetJobId(), nil
}

var catchUpToProto = map[CatchUp]queuedv1.Schedule_CatchUp{
	CatchUpSkip: queuedv1.Schedule_CATCH_UP_SKIP,
	CatchUpOne:  queuedv1.Schedule_CATCH_UP_ONE,
	CatchUpAll:  queuedv1.Schedule_CATCH_UP_ALL,
}

var overlapToProto = map[Overlap]queuedv1.Schedule_Overlap{
	OverlapAllow: queuedv1.Schedule_OVERLAP_ALLOW,
	OverlapSkip:  queuedv1.Schedule_OVERLAP_SKIP,
}

func (s Schedule) toProto() *queuedv1.Schedule {
	p := &queuedv1.Schedule{
		Name:     s.Name,
		Spec:     s.Spec,
		TimeZone: s.TimeZone,
		Job: &queuedv1.ScheduleJobTemplate{
			Queue: s.Job.Queue, Name: s.Job.Name, Payload: s.Job.Payload, Metadata: s.Job.Metadata,
			Priority: s.Job.Priority, MaxAttempts: s.Job.MaxAttempts, Backoff: s.Job.Backoff.toProto(),
		},
		Paused:        s.Paused,
		CatchUpWindow: durationOrNil(s.CatchUpWindow),
	}
	if !s.StartAt.IsZero() {
		p.StartAt = timestamppb.New(s.StartAt)
	}
	if !s.EndAt.IsZero() {
		p.EndAt = timestamppb.New(s.EndAt)
	}
	if s.CatchUp != CatchUpDefault {
		v, ok := catchUpToProto[s.CatchUp]
		if !ok {
			v = -1 // the server names the field in its refusal
		}
		p.CatchUp = v
	}
	if s.Overlap != OverlapDefault {
		v, ok := overlapToProto[s.Overlap]
		if !ok {
			v = -1
		}
		p.Overlap = v
	}
	return p
}

func scheduleFromProto(p *queuedv1.Schedule) *Schedule {
	t := p.GetJob()
	s := &Schedule{
		Name:     p.GetName(),
		Spec:     p.GetSpec(),
		TimeZone: p.GetTimeZone(),
		Job: ScheduleJob{
			Queue: t.GetQueue(), Name: t.GetName(), Payload: t.GetPayload(), Metadata: t.GetMetadata(),
			Priority: t.GetPriority(), MaxAttempts: t.GetMaxAttempts(), Backoff: backoffFromProto(t.GetBackoff()),
		},
		StartAt:    timeOf(p.GetStartAt()),
		EndAt:      timeOf(p.GetEndAt()),
		Paused:     p.GetPaused(),
		NextFireAt: timeOf(p.GetNextFireAt()),
		LastFireAt: timeOf(p.GetLastFireAt()),
		LastJobID:  p.GetLastJobId(),
		CreatedAt:  timeOf(p.GetCreatedAt()),
		UpdatedAt:  timeOf(p.GetUpdatedAt()),
	}
	if p.GetCatchUpWindow() != nil {
		s.CatchUpWindow = p.GetCatchUpWindow().AsDuration()
	}
	for k, v := range catchUpToProto {
		if v == p.GetCatchUp() {
			s.CatchUp = k
		}
	}
	for k, v := range overlapToProto {
		if v == p.GetOverlap() {
			s.Overlap = k
		}
	}
	return s
}
