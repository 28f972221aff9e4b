import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Queue, Worker, QueuedError, TimeoutError, JobFailedError, UnrecoverableError } from '../src';
import { connection, queueName } from './helpers';

test('add and a worker complete a job; getJob shows its result', async (t) => {
  const name = queueName('basic');
  const queue = new Queue(name, { connection: connection() });
  t.after(() => queue.close());

  const job = await queue.add('double', { n: 21 }, { priority: 3, attempts: 2, metadata: { trace: 'abc' } });
  assert.match(job.id, /^[0-9]+$/);
  assert.equal(job.state, 'waiting');
  assert.equal(job.duplicate, false);

  const seen: unknown[] = [];
  const worker = new Worker(name, async (j) => {
    seen.push(j.data);
    await j.updateProgress({ pct: 50 });
    return { doubled: j.data.n * 2 };
  }, { connection: connection() });
  t.after(() => worker.close());
  const completed = new Promise((resolve) => worker.on('completed', (j, result) => resolve([j.id, result])));

  assert.deepEqual(await completed, [job.id, { doubled: 42 }]);
  assert.deepEqual(seen, [{ n: 21 }]);
  const got = await queue.getJob(job.id);
  assert.ok(got);
  assert.equal(got.state, 'completed');
  assert.deepEqual(got.returnvalue, { doubled: 42 });
  assert.deepEqual(got.data, { n: 21 });
  assert.deepEqual(got.progress, { pct: 50 });
  assert.equal(got.attemptsMade, 1);
  assert.equal(got.opts.priority, 3);
  assert.equal(got.opts.attempts, 2);
  assert.deepEqual(got.opts.metadata, { trace: 'abc' });
  assert.ok(got.finishedOn && got.processedOn && got.finishedOn >= got.processedOn);
  assert.equal(await got.getState(), 'completed');
});

test('raw Buffers go through untouched and uniqueKey deduplicates', async (t) => {
  const name = queueName('raw');
  const queue = new Queue(name, { connection: connection() });
  t.after(() => queue.close());
  const payload = Buffer.from([0, 1, 2, 255]);
  const first = await queue.add('bytes', payload, { uniqueKey: 'once', delay: 60_000 });
  const again = await queue.add('bytes', payload, { uniqueKey: 'once' });
  assert.equal(again.id, first.id);
  assert.equal(again.duplicate, true);
  const got = await queue.getJob(first.id);
  assert.ok(got);
  assert.equal(got.state, 'delayed');
  assert.ok(Buffer.isBuffer(got.data), 'data of a job added as a Buffer is a Buffer');
  assert.deepEqual(got.data, payload);
});

test('addBulk is all or nothing and names the bad field', async (t) => {
  const name = queueName('bulk');
  const queue = new Queue(name, { connection: connection() });
  t.after(() => queue.close());
  const jobs = await queue.addBulk([{ name: 'a', data: 1 }, { name: 'b', data: 2 }]);
  assert.equal(jobs.length, 2);
  assert.notEqual(jobs[0].id, jobs[1].id);

  await assert.rejects(
    queue.addBulk([{ name: 'ok', data: 1, opts: { uniqueKey: 'bulk-bad' } }, { name: '', data: 2 }]),
    (err: unknown) => err instanceof QueuedError && err.code === 3 /* INVALID_ARGUMENT */ && /name/.test(err.message),
  );
  // The valid job of the refused batch was not inserted either.
  const fresh = await queue.add('ok', 1, { uniqueKey: 'bulk-bad' });
  assert.equal(fresh.duplicate, false);
  assert.equal(await queue.getJob('999999999'), undefined);
});

test('waitUntilFinished returns the result, reports failures, and times out', async (t) => {
  const name = queueName('wait');
  const queue = new Queue(name, { connection: connection() });
  t.after(() => queue.close());
  const worker = new Worker(name, async (j) => {
    if (j.name === 'bad') throw new UnrecoverableError('bad input');
    return `hello ${j.data.who}`;
  }, { connection: connection(), concurrency: 2 });
  t.after(() => worker.close());

  const job = await queue.add('greet', { who: 'ada' });
  assert.equal(await job.waitUntilFinished(10_000), 'hello ada');
  // A job that finished before the call is answered at once.
  assert.equal(await queue.waitUntilFinished(job.id, 10_000), 'hello ada');

  const bad = await queue.add('bad', {});
  await assert.rejects(queue.waitUntilFinished(bad.id, 10_000), (err: unknown) =>
    err instanceof JobFailedError && /bad input/.test(err.message) && err.attemptErrors.length === 1);

  const never = new Queue(queueName('nobody'), { connection: connection() });
  t.after(() => never.close());
  const idle = await never.add('idle', {});
  await assert.rejects(never.waitUntilFinished(idle.id, 300), TimeoutError);
  await assert.rejects(never.waitUntilFinished('999999999', 5_000), (err: unknown) =>
    err instanceof QueuedError && err.code === 5 /* NOT_FOUND */);
});
