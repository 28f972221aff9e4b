// Queue: the producer side (BullMQ's Queue).
import * as grpc from '@grpc/grpc-js';
import { call, Connection, ConnectionOptions } from './connection';
import type { JobSpecMsg, BackoffMsg } from './proto';
import { encode, isRaw, durationFromMs, timestampFromDate, jobId, CONTENT_TYPE_KEY, RAW_CONTENT_TYPE } from './codec';
import { Job, JobsOptions, JobSource } from './job';
import { wrap } from './errors';
import { waitForJob } from './watch';

export interface QueueOptions {
  connection?: ConnectionOptions;
}

/** toBackoff converts BullMQ-style backoff options to the API's. */
export function toBackoff(b: JobsOptions['backoff']): BackoffMsg | null {
  if (b === undefined) return null;
  if (typeof b === 'number') return { kind: 'KIND_FIXED', base: durationFromMs(b) };
  if (b.type !== 'exponential' && b.type !== 'fixed') {
    throw new TypeError(`backoff.type ${JSON.stringify(b.type)}: want 'exponential' or 'fixed'`);
  }
  return {
    kind: b.type === 'fixed' ? 'KIND_FIXED' : 'KIND_EXPONENTIAL',
    base: durationFromMs(b.delay),
    max: durationFromMs(b.maxDelay),
    jitter: b.jitter ?? 0,
  };
}

/** toSpec builds the API's JobSpec; the server validates it and names the field it refuses. */
export function toSpec(queue: string, name: string, data: unknown, opts: JobsOptions = {}): JobSpecMsg {
  const metadata = { ...(opts.metadata ?? {}) };
  if (isRaw(data)) metadata[CONTENT_TYPE_KEY] = RAW_CONTENT_TYPE;
  return {
    queue,
    name,
    payload: encode(data),
    metadata,
    priority: opts.priority ?? 0,
    delay: durationFromMs(opts.delay),
    runAt: opts.runAt ? timestampFromDate(opts.runAt) : null,
    maxAttempts: opts.attempts ?? 0,
    backoff: toBackoff(opts.backoff),
    uniqueKey: opts.uniqueKey ?? '',
  };
}

/**
 * Queue adds jobs to one queue and looks them up. Like BullMQ's Queue, it is
 * cheap to create; close() releases its connection.
 */
export class Queue<DataType = any, ReturnType = any> implements JobSource {
  readonly name: string;
  private readonly conn: Connection;

  constructor(name: string, opts: QueueOptions = {}) {
    this.name = name;
    this.conn = new Connection(opts.connection);
  }

  /** add enqueues one job; data is JSON-encoded unless it is a Buffer. */
  async add(name: string, data: DataType, opts?: JobsOptions): Promise<Job<DataType, ReturnType>> {
    const [job] = await this.addBulk([{ name, data, opts }]);
    return job;
  }

  /** addBulk enqueues several jobs in one transaction: all or none. */
  async addBulk(jobs: { name: string; data: DataType; opts?: JobsOptions }[]): Promise<Job<DataType, ReturnType>[]> {
    const specs = jobs.map((j) => toSpec(this.name, j.name, j.data, j.opts));
    let res;
    try {
      res = await call(this.conn.queue, this.conn.queue.Enqueue, { jobs: specs });
    } catch (err) {
      throw wrap(`add to queue ${this.name}`, err);
    }
    return res.jobs.map((e, i) => {
      const s = specs[i];
      const job = new Job<DataType, ReturnType>({
        id: e.id, queue: s.queue, name: s.name, payload: s.payload!, metadata: s.metadata!,
        priority: s.priority!, state: e.state, attempt: 0, maxAttempts: s.maxAttempts!, backoff: s.backoff ?? null,
        uniqueKey: s.uniqueKey!, runAt: null, createdAt: null, startedAt: null, finishedAt: null,
        result: Buffer.alloc(0), errors: [], progress: Buffer.alloc(0), leasedBy: '', leaseExpiresAt: null,
      }, { source: this });
      job.duplicate = e.duplicate;
      return job;
    });
  }

  /** getJob returns the job with its state, result and errors, or undefined if there is none. */
  async getJob(id: string | number): Promise<Job<DataType, ReturnType> | undefined> {
    try {
      const res = await call(this.conn.queue, this.conn.queue.GetJob, { id: jobId(id) });
      return new Job<DataType, ReturnType>(res.job, { source: this });
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.NOT_FOUND) return undefined;
      throw wrap(`get job ${id}`, err);
    }
  }

  /**
   * cancelJob cancels an unfinished job. A worker running it sees job.signal
   * abort; its later result is refused. Cancelling a flow parent cancels its
   * unfinished children.
   */
  async cancelJob(id: string | number, reason = ''): Promise<Job<DataType, ReturnType>> {
    try {
      const res = await call(this.conn.queue, this.conn.queue.CancelJob, { id: jobId(id), reason });
      return new Job<DataType, ReturnType>(res.job, { source: this });
    } catch (err) {
      throw wrap(`cancel job ${id}`, err);
    }
  }

  /**
   * waitUntilFinished resolves with the job's result once it completes (at
   * once if it already has), and rejects with JobFailedError,
   * JobCancelledError, or TimeoutError after timeoutMs (default: no limit).
   * It uses a Watch stream, not polling, and resumes it after disconnects.
   */
  async waitUntilFinished(id: string | number, timeoutMs?: number): Promise<ReturnType> {
    const job = await waitForJob(this.conn, id, timeoutMs);
    return new Job<DataType, ReturnType>(job).returnvalue as ReturnType;
  }

  /** close releases the connection. */
  async close(): Promise<void> {
    this.conn.close();
  }
}
