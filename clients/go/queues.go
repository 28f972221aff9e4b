package queued

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// RateLimit caps how many jobs of a queue start per interval, across every
// server replica, like BullMQ's limiter {max, duration}. It is a token
// bucket: after an idle spell up to Max jobs start at once, then Max per
// Per, evenly spread.
type RateLimit struct {
	Max int           `json:"max"`
	Per time.Duration `json:"per"`
}

// QueueCounts are a queue's unfinished jobs by state. Finished jobs are not
// counted.
type QueueCounts struct {
	Available       int64 `json:"available"`
	Scheduled       int64 `json:"scheduled"`
	Running         int64 `json:"running"`
	WaitingChildren int64 `json:"waiting_children"`
}

// Queue is a queue's settings and counts.
type Queue struct {
	Name      string      `json:"name"`
	Paused    bool        `json:"paused"`
	RateLimit *RateLimit  `json:"rate_limit,omitempty"` // nil: not limited
	Counts    QueueCounts `json:"counts"`
	UpdatedAt time.Time   `json:"updated_at,omitzero"` // zero: never configured
}

// PauseQueue stops every server replica from handing out the queue's jobs,
// like BullMQ's queue.pause(). Enqueueing still works and running jobs
// finish normally; a claim already in flight when the pause lands may still
// deliver its jobs.
func (c *Client) PauseQueue(ctx context.Context, queue string) (*Queue, error) {
	resp, err := c.queues.PauseQueue(ctx, &queuedv1.PauseQueueRequest{Queue: queue})
	if err != nil {
		return nil, fmt.Errorf("pause queue %q: %w", queue, err)
	}
	return queueFromProto(resp.GetQueue()), nil
}

// ResumeQueue lets a paused queue's backlog flow again at once.
func (c *Client) ResumeQueue(ctx context.Context, queue string) (*Queue, error) {
	resp, err := c.queues.ResumeQueue(ctx, &queuedv1.ResumeQueueRequest{Queue: queue})
	if err != nil {
		return nil, fmt.Errorf("resume queue %q: %w", queue, err)
	}
	return queueFromProto(resp.GetQueue()), nil
}

// SetRateLimit limits the queue to max jobs started per `per` across all
// replicas. It applies at once, without restarting anything.
func (c *Client) SetRateLimit(ctx context.Context, queue string, max int, per time.Duration) (*Queue, error) {
	resp, err := c.queues.SetRateLimit(ctx, &queuedv1.SetRateLimitRequest{Queue: queue, Max: int32(max), Per: durationpb.New(per)})
	if err != nil {
		return nil, fmt.Errorf("set rate limit of queue %q: %w", queue, err)
	}
	return queueFromProto(resp.GetQueue()), nil
}

// ClearRateLimit removes the queue's rate limit.
func (c *Client) ClearRateLimit(ctx context.Context, queue string) (*Queue, error) {
	resp, err := c.queues.SetRateLimit(ctx, &queuedv1.SetRateLimitRequest{Queue: queue})
	if err != nil {
		return nil, fmt.Errorf("clear rate limit of queue %q: %w", queue, err)
	}
	return queueFromProto(resp.GetQueue()), nil
}

// GetQueue returns a queue's settings and job counts. Every name is a
// queue: one never used comes back running, unlimited and empty.
func (c *Client) GetQueue(ctx context.Context, queue string) (*Queue, error) {
	resp, err := c.queues.GetQueue(ctx, &queuedv1.GetQueueRequest{Queue: queue})
	if err != nil {
		return nil, fmt.Errorf("get queue %q: %w", queue, err)
	}
	return queueFromProto(resp.GetQueue()), nil
}

// ListQueueSettings returns, by name, every queue that holds unfinished
// jobs or was ever paused or limited, with its settings. (ListQueues is the
// overview with finished counts and lag.)
func (c *Client) ListQueueSettings(ctx context.Context) ([]*Queue, error) {
	resp, err := c.queues.ListQueueSettings(ctx, &queuedv1.ListQueueSettingsRequest{})
	if err != nil {
		return nil, fmt.Errorf("list queue settings: %w", err)
	}
	out := make([]*Queue, len(resp.GetQueues()))
	for i, q := range resp.GetQueues() {
		out[i] = queueFromProto(q)
	}
	return out, nil
}

func queueFromProto(p *queuedv1.Queue) *Queue {
	q := &Queue{
		Name:   p.GetName(),
		Paused: p.GetPaused(),
		Counts: QueueCounts{
			Available:       p.GetCounts().GetAvailable(),
			Scheduled:       p.GetCounts().GetScheduled(),
			Running:         p.GetCounts().GetRunning(),
			WaitingChildren: p.GetCounts().GetWaitingChildren(),
		},
	}
	if p.GetUpdatedAt() != nil {
		q.UpdatedAt = p.GetUpdatedAt().AsTime()
	}
	if l := p.GetRateLimit(); l != nil {
		q.RateLimit = &RateLimit{Max: int(l.GetMax()), Per: l.GetPer().AsDuration()}
	}
	return q
}
