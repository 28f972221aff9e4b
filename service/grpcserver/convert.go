package grpcserver

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/service"
)

// Conversions between proto messages and domain values. Proto never enters
// the service; domain values never leave as anything but proto.

func jobSpecFromProto(p *queuedv1.JobSpec, field string) (service.JobSpec, error) {
	if p == nil {
		return service.JobSpec{}, &service.ValidationError{Field: field, Reason: "must be set"}
	}
	backoff, err := backoffFromProto(p.GetBackoff(), field+".backoff")
	if err != nil {
		return service.JobSpec{}, err
	}
	spec := service.JobSpec{
		Queue:       p.GetQueue(),
		Name:        p.GetName(),
		Payload:     p.GetPayload(),
		Metadata:    p.GetMetadata(),
		Priority:    p.GetPriority(),
		MaxAttempts: p.GetMaxAttempts(),
		Backoff:     backoff,
		UniqueKey:   p.GetUniqueKey(),
	}
	if p.RunAt != nil {
		if err := p.RunAt.CheckValid(); err != nil {
			return service.JobSpec{}, &service.ValidationError{Field: field + ".run_at", Reason: err.Error()}
		}
		spec.RunAt = p.RunAt.AsTime()
	}
	if p.Delay != nil {
		if err := p.Delay.CheckValid(); err != nil {
			return service.JobSpec{}, &service.ValidationError{Field: field + ".delay", Reason: err.Error()}
		}
		spec.Delay = p.Delay.AsDuration()
	}
	if spec.MaxAttempts < 0 {
		return service.JobSpec{}, &service.ValidationError{Field: field + ".max_attempts", Reason: fmt.Sprintf("must be at least 1, got %d", spec.MaxAttempts)}
	}
	return spec, nil
}

func backoffFromProto(p *queuedv1.Backoff, field string) (service.Backoff, error) {
	if p == nil {
		return service.Backoff{}, nil
	}
	var b service.Backoff
	switch p.GetKind() {
	case queuedv1.Backoff_KIND_UNSPECIFIED:
		b.Kind = service.BackoffDefault
	case queuedv1.Backoff_KIND_EXPONENTIAL:
		b.Kind = service.BackoffExponential
	case queuedv1.Backoff_KIND_FIXED:
		b.Kind = service.BackoffFixed
	default:
		return b, &service.ValidationError{Field: field + ".kind", Reason: fmt.Sprintf("unknown value %d", p.GetKind())}
	}
	b.Base = p.GetBase().AsDuration()
	b.Max = p.GetMax().AsDuration()
	b.Jitter = p.GetJitter()
	return b, nil
}

func backoffToProto(b service.Backoff) *queuedv1.Backoff {
	out := &queuedv1.Backoff{Jitter: b.Jitter}
	switch b.Kind {
	case service.BackoffExponential:
		out.Kind = queuedv1.Backoff_KIND_EXPONENTIAL
	case service.BackoffFixed:
		out.Kind = queuedv1.Backoff_KIND_FIXED
	}
	if b.Base > 0 {
		out.Base = durationpb.New(b.Base)
	}
	if b.Max > 0 {
		out.Max = durationpb.New(b.Max)
	}
	return out
}

var stateToProto = map[service.JobState]queuedv1.JobState{
	service.StateScheduled:       queuedv1.JobState_JOB_STATE_SCHEDULED,
	service.StateAvailable:       queuedv1.JobState_JOB_STATE_AVAILABLE,
	service.StateRunning:         queuedv1.JobState_JOB_STATE_RUNNING,
	service.StateWaitingChildren: queuedv1.JobState_JOB_STATE_WAITING_CHILDREN,
	service.StateCompleted:       queuedv1.JobState_JOB_STATE_COMPLETED,
	service.StateFailed:          queuedv1.JobState_JOB_STATE_FAILED,
	service.StateCancelled:       queuedv1.JobState_JOB_STATE_CANCELLED,
}

func jobToProto(j service.Job) *queuedv1.Job {
	out := &queuedv1.Job{
		Id:          j.ID,
		Queue:       j.Queue,
		Name:        j.Name,
		Payload:     j.Payload,
		Metadata:    j.Metadata,
		Priority:    j.Priority,
		State:       stateToProto[j.State],
		Attempt:     j.Attempt,
		MaxAttempts: j.MaxAttempts,
		Backoff:     backoffToProto(j.Backoff),
		UniqueKey:   j.UniqueKey,
		RunAt:       timestamp(j.RunAt),
		CreatedAt:   timestamp(j.CreatedAt),
		StartedAt:   timestamp(j.StartedAt),
		FinishedAt:  timestamp(j.FinishedAt),
		Result:      j.Result,
		Progress:    j.Progress,
		LeasedBy:    j.LeasedBy,
	}
	if j.State == service.StateRunning {
		out.LeaseExpiresAt = timestamp(j.LeaseExpiresAt)
	}
	for _, e := range j.Errors {
		out.Errors = append(out.Errors, &queuedv1.AttemptError{Attempt: e.Attempt, Message: e.Message, At: timestamp(e.At)})
	}
	return out
}

func leaseToProto(l *service.Lease) *queuedv1.LeasedJob {
	return &queuedv1.LeasedJob{
		Job:            jobToProto(l.Job),
		LeaseToken:     l.Token,
		LeaseExpiresAt: timestamp(l.ExpiresAt),
		Children:       childrenToProto(l.Children),
	}
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func durationFromProto(d *durationpb.Duration, field string) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, &service.ValidationError{Field: field, Reason: err.Error()}
	}
	return d.AsDuration(), nil
}

func leaseRef(jobID int64, token string) service.LeaseRef {
	return service.LeaseRef{JobID: jobID, Token: token}
}

func nackParams(r *queuedv1.NackRequest, prefix string) (service.NackParams, error) {
	delay, err := durationFromProto(r.GetRetryDelay(), prefix+"retry_delay")
	if err != nil {
		return service.NackParams{}, err
	}
	return service.NackParams{
		LeaseRef:     leaseRef(r.GetJobId(), r.GetLeaseToken()),
		Error:        r.GetError(),
		NonRetryable: r.GetNonRetryable(),
		RetryDelay:   delay,
	}, nil
}
