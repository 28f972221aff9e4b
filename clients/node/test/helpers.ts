// Shared by the tests: they run against the real server named by QUEUED_ADDR
// (internal/nodetest starts one), each in queues of its own.
import { randomUUID } from 'node:crypto';
import type { ConnectionOptions } from '../src';

export function connection(): ConnectionOptions {
  const address = process.env.QUEUED_ADDR;
  if (!address) throw new Error('QUEUED_ADDR is not set: run these tests with `go test ./internal/nodetest` (or set it to a running server)');
  return { address };
}

/** queueName returns a queue name no other test uses. */
export function queueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** eventually retries check until it returns without throwing, for up to timeoutMs (generous: the machine may be loaded). */
export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

/** deferred is a promise with its resolve function, to signal between a processor and a test. */
export function deferred<T = void>(): { promise: Promise<T>; resolve(v: T): void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
