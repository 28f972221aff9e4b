// LeaseConn: one Lease stream, with settlements matched to their replies.
import * as grpc from '@grpc/grpc-js';
import type { LeaseResponseMsg, QueueServiceClient, ReplyMsg, Duration } from './proto';

/** ConnLostError means the stream ended before the server answered; the settlement may or may not have landed. */
export class ConnLostError extends Error {
  constructor() {
    super('lease stream lost');
    this.name = 'ConnLostError';
  }
}

export interface OpenParams {
  queues: string[];
  workerId: string;
  leaseDuration: Duration | null;
}

export interface StreamHandlers {
  job(conn: LeaseConn, msg: NonNullable<LeaseResponseMsg['job']>): void;
  cancelled(conn: LeaseConn, jobId: string, reason: string): void;
}

/** A Lease stream after the server's LeaseOpened. */
export class LeaseConn {
  /** The window last sent; -1 before the first SetWindow. */
  lastWindow = -1;
  /** Why the stream ended; null for a clean end after a half-close. */
  err: Error | null = null;
  ended = false;
  /** Resolves when the stream has ended. */
  readonly done: Promise<void>;
  leaseDurationMs = 0;
  sessionId = '';

  private readonly pending = new Map<string, { resolve(r: ReplyMsg): void; reject(e: Error): void }>();
  private markDone!: () => void;

  private constructor(readonly call: grpc.ClientDuplexStream<object, LeaseResponseMsg>) {
    this.done = new Promise((resolve) => (this.markDone = resolve));
  }

  /**
   * open starts a stream with window 0 and resolves once the server has
   * confirmed it; the worker then asks for as many jobs as it has free slots.
   */
  static open(client: QueueServiceClient, p: OpenParams, h: StreamHandlers): Promise<LeaseConn> {
    return new Promise((resolve, reject) => {
      const call = client.Lease();
      const conn = new LeaseConn(call);
      let opened = false;
      call.on('data', (m: LeaseResponseMsg) => {
        if (!opened) {
          if (m.msg !== 'opened' || !m.opened) {
            call.cancel();
            reject(new Error(`first message on the lease stream is ${m.msg}, want opened`));
            return;
          }
          opened = true;
          const d = m.opened.leaseDuration;
          conn.leaseDurationMs = d ? Number(d.seconds) * 1000 + d.nanos / 1e6 : 0;
          conn.sessionId = m.opened.sessionId;
          resolve(conn);
          return;
        }
        switch (m.msg) {
          case 'job':
            h.job(conn, m.job!);
            break;
          case 'reply':
            conn.resolve(m.reply!);
            break;
          case 'cancelled':
            h.cancelled(conn, m.cancelled!.jobId, m.cancelled!.reason);
            break;
        }
      });
      call.on('error', (err: Error) => {
        if (!opened) reject(err);
        conn.end(err);
      });
      call.on('end', () => {
        if (!opened) reject(new Error('lease stream ended before it opened'));
        conn.end(null);
      });
      call.write({ open: { queues: p.queues, window: 0, workerId: p.workerId, leaseDuration: p.leaseDuration } });
    });
  }

  /** send writes a message unless the stream has ended; false if it has. */
  send(m: object): boolean {
    if (this.ended) return false;
    try {
      this.call.write(m);
      return true;
    } catch {
      return false;
    }
  }

  /** request sends a settlement with ref and resolves with the server's Reply. */
  request(ref: string, m: object): Promise<ReplyMsg> {
    if (this.ended) return Promise.reject(new ConnLostError());
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      if (!this.send({ ...m, ref })) {
        this.pending.delete(ref);
        reject(new ConnLostError());
      }
    });
  }

  private resolve(r: ReplyMsg): void {
    const p = this.pending.get(r.ref);
    if (!p) return;
    this.pending.delete(r.ref);
    p.resolve(r);
  }

  private end(err: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    this.err = err;
    for (const p of this.pending.values()) p.reject(new ConnLostError());
    this.pending.clear();
    this.markDone();
  }

  /** halfClose tells the server this worker sends nothing more; the server answers what it got and ends the stream. */
  halfClose(): void {
    if (!this.ended) this.call.end();
  }

  cancel(): void {
    this.call.cancel();
  }
}
