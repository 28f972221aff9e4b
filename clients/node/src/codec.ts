// Conversions between the SDK's JavaScript values and the API's messages.
import type { Duration, Timestamp, JobStateName } from './proto';

/**
 * Metadata key that marks a payload enqueued as a raw Buffer, so a worker
 * hands the handler the Buffer instead of trying to decode JSON from it.
 */
export const CONTENT_TYPE_KEY = 'content-type';
export const RAW_CONTENT_TYPE = 'application/octet-stream';

/** encode turns data into payload bytes: Buffers and Uint8Arrays as they are, anything else as JSON. */
export function encode(data: unknown): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (data === undefined) return Buffer.alloc(0);
  return Buffer.from(JSON.stringify(data), 'utf8');
}

export function isRaw(data: unknown): boolean {
  return data instanceof Uint8Array;
}

/**
 * decode reads bytes written by encode: empty is undefined, JSON is parsed,
 * anything else (raw bytes from another producer) stays a Buffer.
 */
export function decode(buf: Buffer | null | undefined): unknown {
  if (!buf || buf.length === 0) return undefined;
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    return buf;
  }
}

export function durationFromMs(ms: number | undefined): Duration | null {
  if (ms === undefined || ms === null) return null;
  if (!Number.isFinite(ms)) throw new TypeError(`duration ${ms} is not a finite number of milliseconds`);
  const total = Math.round(ms * 1e6); // nanoseconds
  const seconds = Math.trunc(total / 1e9);
  return { seconds: String(seconds), nanos: total - seconds * 1e9 };
}

export function msFromDuration(d: Duration | null | undefined): number {
  if (!d) return 0;
  return Number(d.seconds) * 1000 + d.nanos / 1e6;
}

export function timestampFromDate(d: Date): Timestamp {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds: String(seconds), nanos: (ms - seconds * 1000) * 1e6 };
}

export function dateFromTimestamp(t: Timestamp | null | undefined): Date | undefined {
  if (!t) return undefined;
  const ms = Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6);
  if (ms === 0) return undefined;
  return new Date(ms);
}

/** JobState names a job's state in BullMQ's words where BullMQ has one. */
export type JobState =
  | 'delayed' // scheduled: a delayed job or a retry waiting for its backoff
  | 'waiting' // available to workers
  | 'active' // leased by a worker
  | 'waiting-children' // a flow parent waiting for its children
  | 'completed'
  | 'failed'
  | 'cancelled'
  | 'unknown';

const states: Record<JobStateName, JobState> = {
  JOB_STATE_UNSPECIFIED: 'unknown',
  JOB_STATE_SCHEDULED: 'delayed',
  JOB_STATE_AVAILABLE: 'waiting',
  JOB_STATE_RUNNING: 'active',
  JOB_STATE_WAITING_CHILDREN: 'waiting-children',
  JOB_STATE_COMPLETED: 'completed',
  JOB_STATE_FAILED: 'failed',
  JOB_STATE_CANCELLED: 'cancelled',
};

export function stateFromProto(s: JobStateName | undefined): JobState {
  return (s && states[s]) || 'unknown';
}

export function isFinished(s: JobState): boolean {
  return s === 'completed' || s === 'failed' || s === 'cancelled';
}

/** jobId checks an id given by the caller and returns it as the API's decimal int64. */
export function jobId(id: string | number | bigint): string {
  const s = String(id);
  if (!/^[1-9][0-9]{0,18}$/.test(s)) throw new TypeError(`job id ${JSON.stringify(s)} is not a positive integer`);
  return s;
}
