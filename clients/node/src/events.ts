// QueueEvents: a queue's job changes as events (BullMQ's QueueEvents), over a Watch stream.
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { Connection, ConnectionOptions } from './connection';
import type { WatchEventMsg } from './proto';
import { decode } from './codec';
import { wrap } from './errors';

/** Statuses a new Watch call cannot cure. */
const permanent = new Set<grpc.status>([
  grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND, grpc.status.OUT_OF_RANGE,
  grpc.status.UNIMPLEMENTED, grpc.status.PERMISSION_DENIED, grpc.status.UNAUTHENTICATED,
]);

/**
 * QueueEvents emits the changes of every job in a queue, with BullMQ's event
 * names and argument shapes: 'added' ({jobId, name}), 'waiting' ({jobId}),
 * 'delayed' ({jobId, delay}), 'active' ({jobId}), 'progress' ({jobId, data}),
 * 'completed' ({jobId, returnvalue}), 'failed' ({jobId, failedReason}), and
 * queued's own 'retrying' ({jobId, failedReason, attemptsMade}),
 * 'waiting-children' ({jobId}) and 'cancelled' ({jobId}). A job that changes
 * again before the server reads its change shows only the latest, so a fast
 * job may skip 'active'; 'completed', 'failed' and 'cancelled' are never
 * skipped, even across reconnects (the watch resumes from its last cursor).
 * 'error' reports a watch that cannot go on (e.g. its cursor is too old).
 */
export class QueueEvents extends EventEmitter {
  readonly name: string;
  private readonly conn: Connection;
  private call?: grpc.ClientReadableStream<WatchEventMsg>;
  private cursor = '';
  private closed = false;
  private backoff = 100;
  private retryTimer?: NodeJS.Timeout;
  private readyResolve!: () => void;
  private readonly ready = new Promise<void>((r) => (this.readyResolve = r));

  constructor(name: string, opts: { connection?: ConnectionOptions } = {}) {
    super();
    this.name = name;
    this.conn = new Connection(opts.connection);
    this.open();
  }

  /** waitUntilReady resolves once the watch is live: every change committed after it is emitted. */
  waitUntilReady(): Promise<void> {
    return this.ready;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.call?.cancel();
    this.conn.close();
  }

  private open(): void {
    if (this.closed) return;
    const c = this.conn.watch.Watch({ queue: this.name, cursor: this.cursor });
    this.call = c;
    c.on('data', (ev: WatchEventMsg) => {
      this.backoff = 100;
      if (ev.cursor) this.cursor = ev.cursor;
      this.dispatch(ev);
    });
    const retry = (err?: grpc.ServiceError): void => {
      if (this.closed || this.call !== c) return;
      this.call = undefined;
      if (err && permanent.has(err.code)) {
        const e = wrap(`watch queue ${this.name}`, err);
        if (this.listenerCount('error') > 0) this.emit('error', e);
        else console.error(`@queued/client QueueEvents ${this.name}:`, e);
        return;
      }
      this.retryTimer = setTimeout(() => this.open(), this.backoff / 2 + Math.random() * this.backoff / 2);
      this.backoff = Math.min(this.backoff * 2, 5000);
    };
    c.on('error', retry);
    c.on('end', () => retry());
  }

  private dispatch(ev: WatchEventMsg): void {
    if (ev.kind === 'WATCH_EVENT_KIND_CHECKPOINT') {
      this.readyResolve();
      return;
    }
    const job = ev.job;
    if (!job) return;
    const jobId = job.id;
    switch (ev.kind) {
      case 'WATCH_EVENT_KIND_ENQUEUED':
        this.emit('added', { jobId, name: job.name });
        if (job.state === 'JOB_STATE_SCHEDULED') this.emit('delayed', { jobId, delay: runAtMs(ev) - Date.now() });
        else if (job.state === 'JOB_STATE_AVAILABLE') this.emit('waiting', { jobId });
        break;
      case 'WATCH_EVENT_KIND_AVAILABLE':
      case 'WATCH_EVENT_KIND_RELEASED':
        this.emit('waiting', { jobId });
        break;
      case 'WATCH_EVENT_KIND_LEASED':
        this.emit('active', { jobId });
        break;
      case 'WATCH_EVENT_KIND_PROGRESS':
        this.emit('progress', { jobId, data: decode(job.progress) });
        break;
      case 'WATCH_EVENT_KIND_RETRY_SCHEDULED':
        this.emit('retrying', { jobId, failedReason: ev.error?.message ?? '', attemptsMade: job.attempt });
        break;
      case 'WATCH_EVENT_KIND_WAITING_CHILDREN':
        this.emit('waiting-children', { jobId });
        break;
      case 'WATCH_EVENT_KIND_COMPLETED':
        this.emit('completed', { jobId, returnvalue: decode(job.result) });
        break;
      case 'WATCH_EVENT_KIND_FAILED':
        this.emit('failed', { jobId, failedReason: ev.error?.message ?? job.errors?.at(-1)?.message ?? '' });
        break;
      case 'WATCH_EVENT_KIND_CANCELLED':
        this.emit('cancelled', { jobId });
        break;
    }
  }
}

function runAtMs(ev: WatchEventMsg): number {
  const t = ev.job?.runAt;
  return t ? Number(t.seconds) * 1000 + t.nanos / 1e6 : Date.now();
}
