// Errors the SDK throws and the errors handlers throw to steer a job.
import * as grpc from '@grpc/grpc-js';

/**
 * UnrecoverableError, thrown by a handler, fails the job at once whatever
 * attempts remain (as in BullMQ): retrying cannot fix a bad payload.
 */
export class UnrecoverableError extends Error {
  constructor(message?: string) {
    super(message);
    this.name = 'UnrecoverableError';
  }
}

/**
 * QueuedError is a call the server refused or could not answer. code is the
 * gRPC status code (grpc.status), e.g. INVALID_ARGUMENT with the offending
 * field named in the message, NOT_FOUND, FAILED_PRECONDITION for a lost lease.
 */
export class QueuedError extends Error {
  readonly code: grpc.status;
  constructor(operation: string, cause: unknown) {
    const se = cause as Partial<grpc.ServiceError>;
    const code = typeof se?.code === 'number' ? se.code : grpc.status.UNKNOWN;
    const details = se?.details || (cause instanceof Error ? cause.message : String(cause));
    super(`${operation}: ${grpc.status[code] ?? code}: ${details}`, { cause });
    this.name = 'QueuedError';
    this.code = code;
  }
}

export function wrap(operation: string, err: unknown): QueuedError {
  return err instanceof QueuedError ? err : new QueuedError(operation, err);
}

/** JobFailedError is how waitUntilFinished reports a job that failed. */
export class JobFailedError extends Error {
  readonly jobId: string;
  /** The error of every attempt, oldest first. */
  readonly attemptErrors: string[];
  constructor(jobId: string, failedReason: string, attemptErrors: string[]) {
    super(`job ${jobId} failed: ${failedReason}`);
    this.name = 'JobFailedError';
    this.jobId = jobId;
    this.attemptErrors = attemptErrors;
  }
}

/**
 * JobCancelledError is the reason of a job.signal aborted because the job
 * was cancelled, and how waitUntilFinished reports a cancelled job.
 */
export class JobCancelledError extends Error {
  readonly jobId: string;
  constructor(jobId: string, reason: string) {
    super(`job ${jobId} cancelled${reason ? `: ${reason}` : ''}`);
    this.name = 'JobCancelledError';
    this.jobId = jobId;
  }
}

/**
 * LeaseLostError is the reason of a job.signal aborted because the worker
 * no longer holds the job (its lease expired and the server took it back):
 * the job will run again elsewhere, so the handler should stop.
 */
export class LeaseLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LeaseLostError';
  }
}

/** ShutdownTimeoutError aborts job.signal when worker.close() stops waiting for the handler. */
export class ShutdownTimeoutError extends Error {
  constructor() {
    super('worker shutdown timeout passed');
    this.name = 'ShutdownTimeoutError';
  }
}

/** TimeoutError is how waitUntilFinished reports a job that did not finish in time. */
export class TimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TimeoutError';
  }
}
