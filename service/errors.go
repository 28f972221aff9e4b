package service

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Domain errors. Adapters map these to their own error forms (gRPC status
// codes) in one place each.
var (
	// ErrNotFound means the job (or other object) does not exist, or no
	// longer exists because retention removed it.
	ErrNotFound = errors.New("not found")
	// ErrLeaseLost means the caller named a lease it no longer holds: the
	// job was settled already, its lease expired and was taken back, or it
	// was cancelled. Nothing was changed.
	ErrLeaseLost = errors.New("lease lost: the job is no longer leased with this token")
	// ErrFinished means the operation needs an unfinished job.
	ErrFinished = errors.New("job already finished")
	// ErrClosed means the service or session is shutting down.
	ErrClosed = errors.New("service is shutting down")
	// ErrUnavailable means the database could not be reached or the
	// connection broke. It is transient: the caller should retry with
	// backoff. If it broke during a commit the write may have landed, so
	// retries of enqueues should carry a unique key.
	ErrUnavailable = errors.New("database unavailable")
)

// ValidationError says which field of a request is wrong and why.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason)
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// TooLargeError means a field exceeds a configured size limit. It is kept
// apart from ValidationError because clients should treat it as a resource
// limit (gRPC RESOURCE_EXHAUSTED), not a malformed request.
type TooLargeError struct {
	Field string
	Size  int
	Limit int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is %d bytes, over the limit of %d", e.Field, e.Size, e.Limit)
}

// ErrAlreadyExists means a unique constraint refused a write.
var ErrAlreadyExists = errors.New("already exists")

// ErrWatcherTooSlow means a watcher fell further behind than its buffer
// allows and was disconnected; it may resume from its last cursor.
var ErrWatcherTooSlow = errors.New("watcher too slow: more events are pending than the watch buffer holds; resume from the last cursor")

// CursorExpiredError means a watch cursor is older than the watch
// retention: changes it has not seen may have been deleted, so resuming
// from it could silently miss them.
type CursorExpiredError struct {
	Cursor    string
	Age       time.Duration
	Retention time.Duration
}

func (e *CursorExpiredError) Error() string {
	return fmt.Sprintf("cursor %s is %v old, beyond the watch retention of %v: start a new watch and read the jobs' current state",
		e.Cursor, e.Age.Round(time.Second), e.Retention)
}

// logLevelFor is the level for a background loop's failure: a database
// outage is expected to pass and is reported by health and metrics, so it
// is a warning; anything else is an error.
func logLevelFor(err error) slog.Level {
	if errors.Is(err, ErrUnavailable) {
		return slog.LevelWarn
	}
	return slog.LevelError
}
