// Worker: runs a processor for the jobs of one queue (BullMQ's Worker).
import { EventEmitter } from 'node:events';
import * as os from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { call, Connection, ConnectionOptions } from './connection';
import { LeaseConn, ConnLostError } from './lease';
import type { LeasedJobMsg, ReplyMsg } from './proto';
import { decode, durationFromMs, encode, stateFromProto } from './codec';
import { Job } from './job';
import { JobCancelledError, LeaseLostError, ShutdownTimeoutError, UnrecoverableError, wrap } from './errors';

export interface WorkerOptions {
  connection?: ConnectionOptions;
  /** Most jobs processed at once (default 1, as in BullMQ). The worker asks the server for no more than its free slots. */
  concurrency?: number;
  /** Start taking jobs at once (default true); otherwise call run(). */
  autorun?: boolean;
  /**
   * Lease length in ms (BullMQ's lockDuration); default the server's (30s).
   * The worker renews the leases of the jobs it holds when a third is left,
   * so a processor may run as long as it needs while the worker is alive.
   */
  lockDuration?: number;
  /** How long close() waits for running processors before aborting their signals (default 30000 ms). */
  shutdownTimeout?: number;
  /** Shown as the job's leased_by; default host-pid. */
  workerId?: string;
  /** Bounds of the wait between attempts to reopen the lease stream (defaults 100 and 5000 ms, doubling). */
  reconnectMin?: number;
  reconnectMax?: number;
}

/** Processor works one job; its return value (JSON-encoded, or a Buffer as is) is the job's result. */
export type Processor<DataType = any, ReturnType = any> = (job: Job<DataType, ReturnType>) => Promise<ReturnType>;

/** A job this worker holds a lease on. */
interface ActiveJob {
  job: Job;
  id: string;
  token: string;
  /** The stream that leased the job; while owned, the server counts the job against its window. */
  conn: LeaseConn;
  owned: boolean;
  started: boolean;
  /** Cancelled or lease lost: the job must not be settled. */
  lost?: Error;
  expiresAt: number;
  extending: boolean;
  abort: AbortController;
}

/** A promise with its resolve function, for waking loops. */
function signalled(): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

function sleep(ms: number, wake?: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    wake?.then(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

function jitter(ms: number): number {
  return ms - Math.random() * 0.2 * ms;
}

/** Quiet period before closing the stream at shutdown; see close(). */
const QUIET_MS = 100;
const QUIET_MAX_WAIT_MS = 2000;
/** How long processors get to return after their signals were aborted at the shutdown timeout. */
const SHUTDOWN_GRACE_MS = 5000;
/** How long closing waits for the server to end the stream after the half-close. */
const CLOSE_WAIT_MS = 10_000;

const retryableCodes = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED]);

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/**
 * Worker holds one Lease stream for its queue, runs up to concurrency
 * processors at once, renews leases, aborts job.signal when a job is
 * cancelled, and reconnects with backoff when the stream breaks. A processor
 * that returns acks its job with the result; one that throws fails the
 * attempt (retried with backoff), or the whole job for an UnrecoverableError.
 *
 * Events: 'ready' (stream open), 'active' (job), 'completed' (job, result),
 * 'failed' (job, err) after each failed attempt, 'progress' (job, progress),
 * 'error' (err) for stream and settlement trouble, 'closing', 'closed'.
 * Without an 'error' listener, errors are written to the console rather than
 * crashing the process, since the worker recovers from them by itself.
 */
export class Worker<DataType = any, ReturnType = any> extends EventEmitter {
  readonly name: string;
  readonly concurrency: number;
  private readonly processor: Processor<DataType, ReturnType>;
  private readonly opts: Required<Omit<WorkerOptions, 'connection' | 'lockDuration'>> & { lockDuration?: number };
  private readonly connection: Connection;

  private readonly jobs = new Map<string, ActiveJob>();
  private waiting: ActiveJob[] = [];
  private busy = 0;
  private stopping = false;
  private paused = false;
  private conn?: LeaseConn;
  private connChange = signalled();
  private changed = signalled();
  private lastArrival = 0;
  private leaseDurationMs = 0;
  private refs = 0;
  private running?: Promise<void>;
  private closing?: Promise<void>;
  private stopConns = signalled();
  private settleStopped = false;
  private renewTimer?: NodeJS.Timeout;
  private readyOnce = signalled();

  constructor(name: string, processor: Processor<DataType, ReturnType>, opts: WorkerOptions = {}) {
    super();
    this.name = name;
    this.processor = processor;
    this.concurrency = Math.max(1, Math.floor(opts.concurrency ?? 1));
    this.opts = {
      autorun: opts.autorun ?? true,
      lockDuration: opts.lockDuration,
      shutdownTimeout: opts.shutdownTimeout ?? 30_000,
      workerId: opts.workerId ?? `${os.hostname()}-${process.pid}`,
      reconnectMin: opts.reconnectMin ?? 100,
      reconnectMax: Math.max(opts.reconnectMax ?? 5000, opts.reconnectMin ?? 100),
      concurrency: this.concurrency,
    };
    this.leaseDurationMs = opts.lockDuration ?? 0;
    this.connection = new Connection(opts.connection);
    if (this.opts.autorun) void this.run();
  }

  /** run starts taking jobs (when autorun is false); it resolves when the worker has closed. */
  run(): Promise<void> {
    if (this.closing) return Promise.reject(new Error('worker is closed'));
    if (!this.running) {
      this.running = this.connLoop();
      this.scheduleRenew();
    }
    return this.running;
  }

  /** waitUntilReady resolves once the worker's first lease stream is open. */
  waitUntilReady(): Promise<void> {
    return this.readyOnce.promise;
  }

  isRunning(): boolean {
    return this.running !== undefined && !this.stopping;
  }

  /** pause stops taking new jobs; running ones go on. resume takes jobs again. */
  pause(): void {
    this.paused = true;
    this.updateWindow();
  }

  resume(): void {
    this.paused = false;
    this.updateWindow();
  }

  /**
   * close shuts down gracefully: it stops taking jobs, hands back jobs held
   * but not started (no attempt counts), lets running processors finish
   * (aborting their signals after shutdownTimeout, or at once with force),
   * half-closes the stream and waits for the server to end it, which the
   * server does once it has answered every settlement: when close resolves,
   * every result this worker reported is committed.
   */
  close(force = false): Promise<void> {
    if (!this.closing) this.closing = this.shutdown(force);
    return this.closing;
  }

  private async shutdown(force: boolean): Promise<void> {
    this.emit('closing', 'closing worker');
    this.stopping = true;
    const waiting = this.waiting;
    this.waiting = [];
    this.updateWindow();
    for (const aj of waiting) void this.release(aj);
    if (this.running) {
      if (force) this.abortRunning(new ShutdownTimeoutError());
      if (!(await this.waitIdle(this.opts.shutdownTimeout))) {
        this.abortRunning(new ShutdownTimeoutError());
        if (!(await this.waitIdle(SHUTDOWN_GRACE_MS))) {
          this.reportError(new Error(`worker ${this.name}: processors ignored their aborted signals; their jobs go back to the queue when the stream closes`));
        }
      }
      await this.waitQuiet();
    }
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.stopConns.resolve();
    await this.running;
    this.settleStopped = true;
    this.connection.close();
    this.emit('closed');
  }

  private abortRunning(cause: Error): void {
    for (const aj of this.jobs.values()) if (aj.started && !aj.abort.signal.aborted) aj.abort.abort(cause);
  }

  /** waitIdle resolves true once the worker holds no job, or false after ms. */
  private async waitIdle(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (this.jobs.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await sleep(left, this.changed.promise);
    }
    return true;
  }

  /**
   * waitQuiet waits until the stream has been quiet for a moment. A claim
   * the server had under way when the window went to 0 still delivers its
   * jobs; handing them back on the stream counts no attempt, whereas the
   * server's clean-up of a closed stream must count one (it cannot know the
   * worker never started them).
   */
  private async waitQuiet(): Promise<void> {
    const deadline = Date.now() + QUIET_MAX_WAIT_MS;
    while (Date.now() < deadline) {
      if (this.jobs.size === 0 && Date.now() - this.lastArrival >= QUIET_MS) return;
      await sleep(10);
    }
  }

  private reportError(err: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else console.error(`@queued/client worker ${this.name}:`, err);
  }

  private notifyChanged(): void {
    const c = this.changed;
    this.changed = signalled();
    c.resolve();
  }

  private setConn(c: LeaseConn | undefined): void {
    this.conn = c;
    const old = this.connChange;
    this.connChange = signalled();
    old.resolve();
  }

  // ---- the stream ----

  /** connLoop keeps a stream open until close(), reconnecting with backoff. */
  private async connLoop(): Promise<void> {
    let delay = this.opts.reconnectMin;
    const stop = this.stopConns.promise;
    let stopped = false;
    void stop.then(() => (stopped = true));
    while (!stopped) {
      let conn: LeaseConn;
      try {
        conn = await LeaseConn.open(this.connection.queue, {
          queues: [this.name],
          workerId: this.opts.workerId,
          leaseDuration: durationFromMs(this.opts.lockDuration),
        }, {
          job: (c, m) => this.received(c, m),
          cancelled: (c, id, reason) => this.cancelled(c, id, reason),
        });
      } catch (err) {
        if (stopped) return;
        this.reportError(wrap(`open lease stream on queue ${this.name} (retrying in ${Math.round(delay)} ms)`, err));
        await sleep(jitter(delay), stop);
        delay = Math.min(delay * 2, this.opts.reconnectMax);
        continue;
      }
      delay = this.opts.reconnectMin;
      if (conn.leaseDurationMs > 0) this.leaseDurationMs = conn.leaseDurationMs;
      this.setConn(conn);
      this.updateWindow();
      this.emit('ready');
      this.readyOnce.resolve();
      await Promise.race([conn.done, stop]);
      if (stopped) {
        await this.closeConn(conn);
        return;
      }
      this.reportError(wrap(`lease stream on queue ${this.name} ended; reconnecting`, conn.err ?? new Error('server ended the stream')));
      this.connLost(conn);
      await sleep(jitter(delay), stop);
    }
  }

  /** closeConn half-closes c and waits for the server to end it. */
  private async closeConn(c: LeaseConn): Promise<void> {
    c.halfClose();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      c.done.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), CLOSE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (timedOut) this.reportError(new Error(`worker ${this.name}: server did not end the lease stream after close; dropping it`));
    else if (c.err) this.reportError(wrap(`lease stream on queue ${this.name} ended with an error after close`, c.err));
    this.connLost(c);
  }

  /**
   * connLost forgets a stream that ended. Started jobs stay with their
   * processors: their leases may still be good (a crashed server does not
   * hand them back), and settling checks that. Unstarted jobs are handed
   * back in case the server still counts them.
   */
  private connLost(c: LeaseConn): void {
    if (this.conn === c) this.setConn(undefined);
    const unstarted: ActiveJob[] = [];
    for (const aj of this.jobs.values()) {
      if (aj.conn !== c) continue;
      aj.owned = false;
      if (!aj.started && !aj.lost) unstarted.push(aj);
    }
    this.waiting = this.waiting.filter((aj) => !unstarted.includes(aj));
    c.cancel();
    for (const aj of unstarted) void this.release(aj);
  }

  /**
   * window is what the current stream may hold: every slot, less those
   * taken by jobs the stream's server session does not count (jobs from an
   * earlier stream, cancelled jobs whose processor has not returned yet).
   */
  private window(): number {
    if (this.stopping || this.paused) return 0;
    let orphans = 0;
    for (const aj of this.jobs.values()) if (aj.started && (!aj.owned || aj.conn !== this.conn)) orphans++;
    return Math.max(0, this.concurrency - orphans);
  }

  private updateWindow(): void {
    const c = this.conn;
    if (!c) return;
    const n = this.window();
    if (n !== c.lastWindow && c.send({ setWindow: { window: n } })) c.lastWindow = n;
  }

  // ---- jobs ----

  private received(conn: LeaseConn, lj: LeasedJobMsg): void {
    const abort = new AbortController();
    const aj: ActiveJob = {
      job: undefined as unknown as Job,
      id: lj.job.id,
      token: lj.leaseToken,
      conn,
      owned: true,
      started: false,
      expiresAt: lj.leaseExpiresAt ? Number(lj.leaseExpiresAt.seconds) * 1000 + lj.leaseExpiresAt.nanos / 1e6 : Date.now() + this.leaseDurationMs,
      extending: false,
      abort,
    };
    aj.job = new Job(lj.job, {
      children: lj.children,
      lease: { signal: abort.signal, updateProgress: (p) => this.progress(aj, p) },
    });
    this.jobs.set(aj.id, aj);
    this.lastArrival = Date.now();
    if (this.stopping) void this.release(aj);
    else if (this.busy < this.concurrency) this.start(aj);
    else {
      // The server sent more than there are free slots: a slot it freed (a
      // cancellation) is still busy here. Hold the job, its lease renewed,
      // until a processor returns.
      this.waiting.push(aj);
    }
  }

  private start(aj: ActiveJob): void {
    aj.started = true;
    this.busy++;
    void this.work(aj);
  }

  /** work runs the processor and settles the job. */
  private async work(aj: ActiveJob): Promise<void> {
    const job = aj.job;
    let result: unknown;
    let failure: unknown;
    let failed = false;
    try {
      this.emit('active', job, 'waiting');
      result = await this.processor(job as Job<DataType, ReturnType>);
    } catch (err) {
      failed = true;
      failure = err;
    }
    try {
      if (aj.lost) return; // cancelled or lease lost: nothing to settle
      if (!failed) {
        let payload: Buffer;
        try {
          payload = encode(result);
        } catch (err) {
          failed = true;
          failure = new UnrecoverableError(`encode result: ${errorMessage(err)}`);
        }
        if (!failed) {
          await this.settle(aj, { ack: { jobId: aj.id, leaseToken: aj.token, result: payload! } });
          job.returnvalue = result as ReturnType;
          job.rawResult = payload!;
          job.state = 'completed';
          job.finishedOn = Date.now();
          this.emit('completed', job, result, 'active');
          return;
        }
      }
      const nonRetryable = failure instanceof UnrecoverableError || (failure as Error)?.name === 'UnrecoverableError';
      const message = errorMessage(failure);
      const reply = await this.settle(aj, { nack: { jobId: aj.id, leaseToken: aj.token, error: message, nonRetryable } });
      job.failedReason = message;
      job.attemptErrors.push({ attempt: job.attemptsMade, message, at: new Date() });
      job.state = stateFromProto(reply.state);
      if (job.state === 'failed') job.finishedOn = Date.now();
      this.emit('failed', job, failure, 'active');
    } catch (err) {
      this.reportError(wrap(`settle job ${aj.id}`, err));
    } finally {
      this.finish(aj);
    }
  }

  /** finish frees a job's slot and starts a waiting job in it. */
  private finish(aj: ActiveJob): void {
    if (this.jobs.get(aj.id) === aj) this.jobs.delete(aj.id);
    if (aj.started) this.busy--;
    while (this.waiting.length > 0 && this.busy < this.concurrency && !this.stopping) {
      this.start(this.waiting.shift()!);
    }
    this.notifyChanged();
    this.updateWindow();
  }

  /** drop forgets a job that was never started (lost or released). */
  private drop(aj: ActiveJob): void {
    if (this.jobs.get(aj.id) === aj) this.jobs.delete(aj.id);
    this.waiting = this.waiting.filter((w) => w !== aj);
    this.notifyChanged();
  }

  /** release hands back a job that was never started; no attempt counts. */
  private async release(aj: ActiveJob): Promise<void> {
    try {
      await this.settle(aj, { release: { jobId: aj.id, leaseToken: aj.token } });
    } catch {
      // The lease is gone already; the server took the job back.
    } finally {
      this.drop(aj);
    }
  }

  /** cancelled stops a job the server says is cancelled or whose lease it took back. */
  private cancelled(conn: LeaseConn, id: string, reason: string): void {
    const aj = this.jobs.get(id);
    if (!aj || aj.conn !== conn) return;
    this.lose(aj, reason === 'lease expired' ? new LeaseLostError(`job ${id}: ${reason}`) : new JobCancelledError(id, reason));
    this.updateWindow();
  }

  /** lose marks a job as no longer ours to settle and aborts its processor. */
  private lose(aj: ActiveJob, cause: Error): void {
    if (aj.lost) return;
    aj.lost = cause;
    aj.owned = false;
    if (aj.started) aj.abort.abort(cause);
    else this.drop(aj);
  }

  private async progress(aj: ActiveJob, progress: Buffer): Promise<void> {
    if (aj.lost) throw aj.lost;
    try {
      await this.settle(aj, { progress: { jobId: aj.id, leaseToken: aj.token, progress } });
    } catch (err) {
      throw wrap(`report progress of job ${aj.id}`, err);
    }
    this.emit('progress', aj.job, decode(progress));
  }

  // ---- settlements ----

  /**
   * settle delivers an ack, nack, extend, release or progress report and
   * returns the server's answer. It uses the current stream, whichever
   * stream leased the job (the lease token is what the server checks), or
   * the unary call while no stream is up. When the connection breaks before
   * the answer it tries again until the lease has expired; a retry of a
   * settlement that did land is refused with FAILED_PRECONDITION, which is
   * safe: the first one counted.
   */
  private async settle(aj: ActiveJob, req: Record<string, object>): Promise<ReplyMsg> {
    let backoff = 50;
    for (;;) {
      const conn = this.conn;
      const changed = this.connChange.promise;
      try {
        if (conn) {
          const reply = await conn.request(String(++this.refs), req);
          if (reply.code !== grpc.status.OK) {
            throw Object.assign(new Error(reply.message), { code: reply.code, details: reply.message });
          }
          return reply;
        }
        return await this.unary(req);
      } catch (err) {
        const retryable = err instanceof ConnLostError || retryableCodes.has((err as grpc.ServiceError).code);
        if (!retryable || this.settleStopped) throw err;
        if (Date.now() > aj.expiresAt) {
          throw new LeaseLostError(`job ${aj.id}: the lease expired while the server was unreachable (last error: ${errorMessage(err)})`);
        }
        await sleep(jitter(backoff), changed);
        backoff = Math.min(backoff * 2, 1000);
      }
    }
  }

  /** unary sends a stream settlement as the equivalent unary call, answering in the stream's Reply form. */
  private async unary(req: Record<string, object>): Promise<ReplyMsg> {
    const q = this.connection.queue;
    const reply: ReplyMsg = { ref: '', jobId: '', code: 0, message: '', leaseExpiresAt: null, state: 'JOB_STATE_UNSPECIFIED' };
    const [kind, body] = Object.entries(req)[0];
    switch (kind) {
      case 'ack':
        await call(q, q.Ack, body);
        break;
      case 'nack':
        reply.state = (await call(q, q.Nack, body)).state;
        break;
      case 'extend':
        reply.leaseExpiresAt = (await call(q, q.Extend, body)).leaseExpiresAt;
        break;
      case 'release':
        await call(q, q.Release, body);
        break;
      case 'progress':
        await call(q, q.UpdateProgress, body);
        break;
      default:
        throw new Error(`no unary form for ${kind}`);
    }
    return reply;
  }

  // ---- lease renewal ----

  /** scheduleRenew extends the lease of every held job once less than a third of it is left. */
  private scheduleRenew(): void {
    const d = this.leaseDurationMs > 0 ? this.leaseDurationMs : 30_000;
    this.renewTimer = setTimeout(() => {
      const now = Date.now();
      for (const aj of this.jobs.values()) {
        if (!aj.lost && !aj.extending && aj.expiresAt - now < d / 3) {
          aj.extending = true;
          void this.extend(aj, d);
        }
      }
      this.scheduleRenew();
    }, Math.max(d / 6, 10));
  }

  private async extend(aj: ActiveJob, d: number): Promise<void> {
    try {
      const reply = await this.settle(aj, { extend: { jobId: aj.id, leaseToken: aj.token, leaseDuration: durationFromMs(d) } });
      if (reply.leaseExpiresAt) aj.expiresAt = Number(reply.leaseExpiresAt.seconds) * 1000 + reply.leaseExpiresAt.nanos / 1e6;
    } catch (err) {
      const code = (err as grpc.ServiceError).code;
      if (err instanceof LeaseLostError || code === grpc.status.FAILED_PRECONDITION || code === grpc.status.NOT_FOUND) {
        this.lose(aj, err instanceof LeaseLostError ? err : new LeaseLostError(`job ${aj.id}: ${errorMessage(err)}`));
        this.updateWindow();
      } else {
        this.reportError(wrap(`extend lease of job ${aj.id}`, err));
      }
    } finally {
      aj.extending = false;
    }
  }
}

