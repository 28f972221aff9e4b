// Job: a job as the server stores it, in BullMQ's field names.
import type { ChildOutcomeMsg, JobMsg, BackoffMsg } from './proto';
import {
  decode, encode, dateFromTimestamp, msFromDuration, stateFromProto, JobState,
  CONTENT_TYPE_KEY, RAW_CONTENT_TYPE,
} from './codec';

/** BackoffOptions is how long a failed job waits before its next attempt. */
export interface BackoffOptions {
  /** exponential: delay * 2^(attempt-1), capped at maxDelay; fixed: delay every time. */
  type: 'exponential' | 'fixed';
  /** Milliseconds (the first delay for exponential). */
  delay: number;
  /** Cap for exponential backoff in milliseconds; default none. */
  maxDelay?: number;
  /** Fraction in [0, 1] of each delay randomized downward; default 0. */
  jitter?: number;
}

/** JobsOptions are the options of Queue.add (a subset of BullMQ's, plus queued's own). */
export interface JobsOptions {
  /** Lower runs first; default 0. As in BullMQ, 1 runs before 10. */
  priority?: number;
  /** Milliseconds to wait before the first attempt. */
  delay?: number;
  /** Earliest time of the first attempt (instead of delay). */
  runAt?: Date;
  /** Attempts before the job fails; default the server's (5). */
  attempts?: number;
  /** A number is a fixed delay in milliseconds. Default the server's (exponential from 1s, 20% jitter). */
  backoff?: number | BackoffOptions;
  /**
   * While an unfinished job with this key exists in the queue, add returns
   * that job (with duplicate set) instead of inserting another: what BullMQ
   * users do with a custom jobId. The job's id is still the server's.
   */
  uniqueKey?: string;
  /** Free-form string pairs (trace context, producer). */
  metadata?: Record<string, string>;
}

/** An attempt that failed. */
export interface AttemptError {
  attempt: number;
  message: string;
  at?: Date;
}

/** ChildOutcome is a child of a flow parent as the parent's handler sees it. */
export interface ChildOutcome {
  id: string;
  /** The name the child was given in the flow, or its index. */
  childName: string;
  state: JobState;
  /** The child's decoded result, when it completed. */
  returnvalue: unknown;
  /** The last error of a child that failed or was cancelled. */
  failedReason: string;
  onFailure: 'fail_parent' | 'ignore' | 'continue';
}

/** What a Job needs from the worker that holds its lease. */
export interface JobLease {
  signal: AbortSignal;
  updateProgress(progress: Buffer): Promise<void>;
}

/** What a Job needs from the Queue it came from. */
export interface JobSource {
  getJob(id: string): Promise<Job | undefined>;
  waitUntilFinished(id: string, timeoutMs?: number): Promise<unknown>;
}

const policies = {
  CHILD_FAILURE_POLICY_UNSPECIFIED: 'fail_parent',
  CHILD_FAILURE_POLICY_FAIL_PARENT: 'fail_parent',
  CHILD_FAILURE_POLICY_IGNORE: 'ignore',
  CHILD_FAILURE_POLICY_CONTINUE: 'continue',
} as const;

function backoffFromProto(b: BackoffMsg | null): BackoffOptions | undefined {
  if (!b || b.kind === 'KIND_UNSPECIFIED') return undefined;
  const out: BackoffOptions = { type: b.kind === 'KIND_FIXED' ? 'fixed' : 'exponential', delay: msFromDuration(b.base) };
  if (b.max) out.maxDelay = msFromDuration(b.max);
  if (b.jitter) out.jitter = b.jitter;
  return out;
}

/**
 * Job is one job. data is the payload decoded from JSON (or the Buffer it
 * was enqueued as); returnvalue likewise for the result. A job handed to a
 * Worker's processor also has a signal and updateProgress.
 */
export class Job<DataType = any, ReturnType = any> {
  readonly id: string;
  readonly queueName: string;
  readonly name: string;
  readonly data: DataType;
  readonly rawPayload: Buffer;
  readonly opts: JobsOptions;
  state: JobState;
  /** Attempts started so far, including a running one. */
  attemptsMade: number;
  progress: unknown;
  returnvalue: ReturnType | undefined;
  rawResult: Buffer;
  /** The last attempt's error; empty when none failed. */
  failedReason: string;
  /** The error of every failed attempt, oldest first. */
  attemptErrors: AttemptError[];
  /** Creation time in ms since the epoch (BullMQ's timestamp). */
  timestamp: number;
  processedOn?: number;
  finishedOn?: number;
  /** Set by Queue.add: an unfinished job with the same uniqueKey existed, and this is that job. */
  duplicate = false;
  /** For a flow parent run by a worker: its children as they were when it was leased. */
  children: ChildOutcome[] = [];

  private readonly lease?: JobLease;
  private readonly source?: JobSource;

  /** @internal Jobs come from Queue, Worker and FlowProducer. */
  constructor(msg: JobMsg, hooks: { lease?: JobLease; source?: JobSource; children?: ChildOutcomeMsg[] } = {}) {
    this.id = msg.id;
    this.queueName = msg.queue;
    this.name = msg.name;
    this.rawPayload = msg.payload ?? Buffer.alloc(0);
    const raw = msg.metadata?.[CONTENT_TYPE_KEY] === RAW_CONTENT_TYPE;
    this.data = (raw ? this.rawPayload : decode(this.rawPayload)) as DataType;
    const metadata = { ...(msg.metadata ?? {}) };
    this.opts = {
      priority: msg.priority,
      attempts: msg.maxAttempts,
      backoff: backoffFromProto(msg.backoff),
      uniqueKey: msg.uniqueKey || undefined,
      metadata,
    };
    this.state = stateFromProto(msg.state);
    this.attemptsMade = msg.attempt;
    this.progress = decode(msg.progress);
    this.rawResult = msg.result ?? Buffer.alloc(0);
    this.returnvalue = decode(this.rawResult) as ReturnType | undefined;
    this.attemptErrors = (msg.errors ?? []).map((e) => ({ attempt: e.attempt, message: e.message, at: dateFromTimestamp(e.at) }));
    this.failedReason = this.attemptErrors.at(-1)?.message ?? '';
    this.timestamp = dateFromTimestamp(msg.createdAt)?.getTime() ?? 0;
    this.processedOn = dateFromTimestamp(msg.startedAt)?.getTime();
    this.finishedOn = dateFromTimestamp(msg.finishedAt)?.getTime();
    this.lease = hooks.lease;
    this.source = hooks.source;
    this.children = (hooks.children ?? []).map((c) => ({
      id: c.jobId,
      childName: c.childName,
      state: stateFromProto(c.state),
      returnvalue: decode(c.result),
      failedReason: c.error,
      onFailure: policies[c.onFailure] ?? 'fail_parent',
    }));
  }

  /**
   * signal aborts when the worker must stop this job: it was cancelled
   * (reason a JobCancelledError), its lease was lost (LeaseLostError), or
   * worker.close() ran out of patience (ShutdownTimeoutError). Pass it to
   * fetch and friends. Only jobs handed to a processor have one.
   */
  get signal(): AbortSignal {
    if (!this.lease) throw new Error(`job ${this.id}: only a job handed to a worker's processor has a signal`);
    return this.lease.signal;
  }

  /** updateProgress stores a progress report (JSON-encoded), visible in getJob and to watchers. */
  async updateProgress(progress: unknown): Promise<void> {
    if (!this.lease) throw new Error(`job ${this.id}: only the processor working a job can report its progress`);
    await this.lease.updateProgress(encode(progress));
    this.progress = progress;
  }

  /** getChildrenValues returns the results of the completed children, keyed by child name (BullMQ keys by job key). */
  async getChildrenValues<T = any>(): Promise<Record<string, T>> {
    const out: Record<string, T> = {};
    for (const c of this.children) if (c.state === 'completed') out[c.childName] = c.returnvalue as T;
    return out;
  }

  /** getFailedChildrenValues returns the errors of the children that failed or were cancelled, keyed by child name. */
  async getFailedChildrenValues(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const c of this.children) if (c.state === 'failed' || c.state === 'cancelled') out[c.childName] = c.failedReason;
    return out;
  }

  /** getState fetches the job's current state from the server. */
  async getState(): Promise<JobState> {
    if (!this.source) return this.state;
    const j = await this.source.getJob(this.id);
    return j?.state ?? 'unknown';
  }

  /**
   * waitUntilFinished resolves with the job's result once it completes, and
   * rejects with a JobFailedError, a JobCancelledError, or a TimeoutError
   * after timeoutMs. Only jobs from a Queue or FlowProducer can wait.
   */
  waitUntilFinished(timeoutMs?: number): Promise<ReturnType> {
    if (!this.source) return Promise.reject(new Error(`job ${this.id}: use queue.waitUntilFinished(id)`));
    return this.source.waitUntilFinished(this.id, timeoutMs) as Promise<ReturnType>;
  }
}
