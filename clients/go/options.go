package queued

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// JobSpec is a job to enqueue. Enqueue builds one from its arguments and
// options; EnqueueMany takes them directly. Zero fields mean the server's
// defaults.
type JobSpec struct {
	Queue   string
	Name    string
	Payload []byte
	// Metadata carries free-form pairs such as trace context.
	Metadata map[string]string
	// Priority: lower runs first.
	Priority int32
	// RunAt and Delay postpone the first attempt; set at most one.
	RunAt time.Time
	Delay time.Duration
	// MaxAttempts before the job fails; 0 is the server default.
	MaxAttempts int32
	// Backoff between attempts; the zero value is the server default.
	Backoff BackoffPolicy
	// UniqueKey deduplicates: while an unfinished job with the same key
	// exists in the queue, enqueueing returns that job instead.
	UniqueKey string
}

// EnqueueOption sets a field of a JobSpec.
type EnqueueOption func(*JobSpec)

// Priority orders jobs within a queue: lower runs first (default 0).
func Priority(p int32) EnqueueOption { return func(s *JobSpec) { s.Priority = p } }

// Delay runs the job no earlier than d from now.
func Delay(d time.Duration) EnqueueOption { return func(s *JobSpec) { s.Delay = d } }

// RunAt runs the job no earlier than t.
func RunAt(t time.Time) EnqueueOption { return func(s *JobSpec) { s.RunAt = t } }

// MaxAttempts bounds how often the job is tried before it fails.
func MaxAttempts(n int32) EnqueueOption { return func(s *JobSpec) { s.MaxAttempts = n } }

// Backoff sets how long the job waits between attempts.
func Backoff(p BackoffPolicy) EnqueueOption { return func(s *JobSpec) { s.Backoff = p } }

// UniqueKey makes the enqueue idempotent while a job with the key is
// unfinished in the queue (e.g. "welcome-email:" + userID).
func UniqueKey(key string) EnqueueOption { return func(s *JobSpec) { s.UniqueKey = key } }

// Metadata adds one metadata pair; use it several times for several pairs.
func Metadata(key, value string) EnqueueOption {
	return func(s *JobSpec) {
		if s.Metadata == nil {
			s.Metadata = map[string]string{}
		}
		s.Metadata[key] = value
	}
}

// BackoffKind selects the retry delay formula.
type BackoffKind string

// Backoff kinds. The empty kind means the server default (exponential from
// one second, capped at an hour, 20% jitter).
const (
	BackoffDefault     BackoffKind = ""
	BackoffExponential BackoffKind = "exponential" // Base * 2^(attempt-1), capped at Max
	BackoffFixed       BackoffKind = "fixed"       // Base after every attempt
)

// BackoffPolicy says how long a failed job waits before its next attempt.
type BackoffPolicy struct {
	Kind BackoffKind   `json:"kind,omitempty"`
	Base time.Duration `json:"base,omitempty"`
	Max  time.Duration `json:"max,omitempty"`
	// Jitter in [0, 1] randomizes that fraction of each delay downward, so
	// jobs that failed together do not retry together.
	Jitter float64 `json:"jitter,omitempty"`
}

// ExponentialBackoff doubles the delay from base up to max, with 20% jitter.
func ExponentialBackoff(base, max time.Duration) BackoffPolicy {
	return BackoffPolicy{Kind: BackoffExponential, Base: base, Max: max, Jitter: 0.2}
}

// FixedBackoff waits d between attempts, without jitter.
func FixedBackoff(d time.Duration) BackoffPolicy {
	return BackoffPolicy{Kind: BackoffFixed, Base: d}
}

func (b BackoffPolicy) toProto() *queuedv1.Backoff {
	if b == (BackoffPolicy{}) {
		return nil
	}
	p := &queuedv1.Backoff{Jitter: b.Jitter}
	switch b.Kind {
	case BackoffExponential:
		p.Kind = queuedv1.Backoff_KIND_EXPONENTIAL
	case BackoffFixed:
		p.Kind = queuedv1.Backoff_KIND_FIXED
	}
	if b.Base != 0 {
		p.Base = durationpb.New(b.Base)
	}
	if b.Max != 0 {
		p.Max = durationpb.New(b.Max)
	}
	return p
}

func backoffFromProto(p *queuedv1.Backoff) BackoffPolicy {
	if p == nil {
		return BackoffPolicy{}
	}
	b := BackoffPolicy{Jitter: p.GetJitter()}
	switch p.GetKind() {
	case queuedv1.Backoff_KIND_EXPONENTIAL:
		b.Kind = BackoffExponential
	case queuedv1.Backoff_KIND_FIXED:
		b.Kind = BackoffFixed
	}
	if p.GetBase() != nil {
		b.Base = p.GetBase().AsDuration()
	}
	if p.GetMax() != nil {
		b.Max = p.GetMax().AsDuration()
	}
	return b
}

// ParseBackoff reads "exponential:BASE:MAX", "exponential:BASE",
// "fixed:DELAY" or "default", as the CLI accepts it.
func ParseBackoff(s string) (BackoffPolicy, error) {
	var base, maxDelay string
	parts := strings.SplitN(s, ":", 3)
	kind := parts[0]
	if len(parts) > 1 {
		base = parts[1]
	}
	if len(parts) > 2 {
		maxDelay = parts[2]
	}
	parse := func(v string) (time.Duration, error) {
		if v == "" {
			return 0, nil
		}
		return time.ParseDuration(v)
	}
	b, errB := parse(base)
	m, errM := parse(maxDelay)
	if errB != nil || errM != nil {
		return BackoffPolicy{}, fmt.Errorf("backoff %q: durations must look like 500ms or 1m", s)
	}
	switch BackoffKind(kind) {
	case "", "default":
		return BackoffPolicy{}, nil
	case BackoffExponential:
		if m == 0 {
			m = time.Hour
		}
		return ExponentialBackoff(b, m), nil
	case BackoffFixed:
		if maxDelay != "" {
			return BackoffPolicy{}, fmt.Errorf("backoff %q: fixed takes one delay", s)
		}
		return FixedBackoff(b), nil
	}
	return BackoffPolicy{}, fmt.Errorf("backoff %q: want exponential:BASE[:MAX] or fixed:DELAY", s)
}

func (s JobSpec) toProto() *queuedv1.JobSpec {
	p := &queuedv1.JobSpec{
		Queue:       s.Queue,
		Name:        s.Name,
		Payload:     s.Payload,
		Metadata:    s.Metadata,
		Priority:    s.Priority,
		MaxAttempts: s.MaxAttempts,
		Backoff:     s.Backoff.toProto(),
		UniqueKey:   s.UniqueKey,
		Delay:       durationOrNil(s.Delay),
	}
	if !s.RunAt.IsZero() {
		p.RunAt = timestamppb.New(s.RunAt)
	}
	return p
}

// NewJSONSpec builds a JobSpec whose payload is v encoded as JSON.
func NewJSONSpec(queue, name string, v any, opts ...EnqueueOption) (JobSpec, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return JobSpec{}, fmt.Errorf("encode payload of %s job: %w", name, err)
	}
	return NewSpec(queue, name, payload, opts...), nil
}

// NewSpec builds a JobSpec from a payload and options.
func NewSpec(queue, name string, payload []byte, opts ...EnqueueOption) JobSpec {
	s := JobSpec{Queue: queue, Name: name, Payload: payload}
	for _, o := range opts {
		o(&s)
	}
	return s
}
