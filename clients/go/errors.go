package queued

import (
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Causes of a handler's context ending, as context.Cause reports them.
var (
	// ErrJobCancelled: someone called CancelJob; the job will not run again.
	ErrJobCancelled = errors.New("queued: job cancelled")
	// ErrLeaseLost: the server took the job back (its lease expired or its
	// stream ended); it will run again elsewhere, so stop without side
	// effects if you can.
	ErrLeaseLost = errors.New("queued: lease lost")
	// ErrShutdownTimeout: the worker is shutting down and the handler did
	// not finish within WorkerConfig.ShutdownTimeout.
	ErrShutdownTimeout = errors.New("queued: worker shutdown timeout")
)

// ErrRelease, returned (or wrapped) by a handler, hands the job back
// unworked: no attempt counts and it can be leased again at once. Use it
// for a job this worker decided not to run after all.
var ErrRelease = errors.New("queued: release the job unworked")

// Permanent marks err as not worth retrying: the worker fails the job at
// once, whatever attempts remain. errors.Is/As still see err through it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryIn asks for the next attempt after d instead of the job's backoff,
// e.g. when a rate-limited API said when to come back.
func RetryIn(d time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &retryError{err: err, delay: d}
}

type retryError struct {
	err   error
	delay time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

func retryDelay(err error) time.Duration {
	var r *retryError
	if errors.As(err, &r) {
		return r.delay
	}
	return 0
}

// IsNotFound reports whether err says the job does not exist.
func IsNotFound(err error) bool { return status.Code(err) == codes.NotFound }

// IsLeaseLost reports whether err says the lease named is no longer held
// (the job was settled, taken back or cancelled), or the job is finished.
func IsLeaseLost(err error) bool { return status.Code(err) == codes.FailedPrecondition }
