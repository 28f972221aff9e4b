// Waiting for jobs to finish with WatchService, resuming after disconnects.
import * as grpc from '@grpc/grpc-js';
import type { Connection } from './connection';
import type { JobMsg, WatchEventMsg } from './proto';
import { jobId, stateFromProto } from './codec';
import { JobCancelledError, JobFailedError, TimeoutError, wrap } from './errors';

/** Statuses a new Watch call cannot cure: a bad request, unknown ids, a cursor too old. */
const permanent = new Set<grpc.status>([
  grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND, grpc.status.OUT_OF_RANGE,
  grpc.status.UNIMPLEMENTED, grpc.status.PERMISSION_DENIED, grpc.status.UNAUTHENTICATED,
]);

/**
 * waitForJob resolves with the job once it finishes: the server first sends
 * the job's current state, so a job that already finished is answered at
 * once. When the stream breaks it calls again with the last cursor, which
 * the server guarantees skips no terminal change. A job that failed or was
 * cancelled rejects with JobFailedError or JobCancelledError.
 */
export function waitForJob(conn: Connection, id: string | number, timeoutMs?: number): Promise<JobMsg> {
  const want = jobId(id);
  return new Promise<JobMsg>((resolve, reject) => {
    let cursor = '';
    let call: grpc.ClientReadableStream<WatchEventMsg> | undefined;
    let done = false;
    let backoff = 100;
    let retryTimer: NodeJS.Timeout | undefined;
    const timer = timeoutMs !== undefined && timeoutMs > 0
      ? setTimeout(() => finish(new TimeoutError(`job ${want} did not finish within ${timeoutMs} ms`)), timeoutMs)
      : undefined;

    function finish(err: Error | null, job?: JobMsg): void {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      if (retryTimer) clearTimeout(retryTimer);
      call?.cancel();
      if (err) reject(err);
      else resolve(job!);
    }

    function open(): void {
      if (done) return;
      const c = conn.watch.Watch({ jobIds: [want], cursor });
      call = c;
      c.on('data', (ev: WatchEventMsg) => {
        backoff = 100;
        if (ev.cursor) cursor = ev.cursor;
        const job = ev.job;
        if (!job || job.id !== want) return;
        switch (stateFromProto(job.state)) {
          case 'completed':
            return finish(null, job);
          case 'failed': {
            const errors = (job.errors ?? []).map((e) => e.message);
            return finish(new JobFailedError(want, ev.error?.message || errors.at(-1) || 'no error recorded', errors));
          }
          case 'cancelled':
            return finish(new JobCancelledError(want, ''));
        }
      });
      const retry = (err?: grpc.ServiceError): void => {
        if (done || call !== c) return;
        call = undefined;
        if (err && permanent.has(err.code)) return finish(wrap(`wait for job ${want}`, err));
        retryTimer = setTimeout(open, backoff / 2 + Math.random() * backoff / 2);
        backoff = Math.min(backoff * 2, 5000);
      };
      c.on('error', retry);
      c.on('end', () => retry());
    }
    open();
  });
}
