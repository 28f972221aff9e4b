import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Queue, Worker, Job, UnrecoverableError, JobCancelledError } from '../src';
import { connection, queueName, eventually, sleep, deferred } from './helpers';

test('a throwing processor is retried with backoff, then the job fails with every error', async (t) => {
  const name = queueName('retry');
  const queue = new Queue(name, { connection: connection() });
  t.after(() => queue.close());
  const starts: number[] = [];
  const worker = new Worker(name, async (j) => {
    starts.push(Date.now());
    throw new Error(`boom ${j.attemptsMade}`);
  }, { connection: connection() });
  t.after(() => worker.close());
  const failedEvents: [string, string][] = [];
  worker.on('failed', (j: Job, err: Error) => failedEvents.push([j.state, err.message]));

  const job = await queue.add('flaky', {}, { attempts: 3, backoff: { type: 'exponential', delay: 150 } });
  await assert.rejects(queue.waitUntilFinished(job.id, 20_000), /boom 3/);

  const got = await queue.getJob(job.id);
  assert.ok(got);
  assert.equal(got.state, 'failed');
  assert.equal(got.attemptsMade, 3);
  assert.deepEqual(got.attemptErrors.map((e) => e.message), ['boom 1', 'boom 2', 'boom 3']);
  assert.equal(got.failedReason, 'boom 3');
  await eventually(() => assert.deepEqual(failedEvents, [['delayed', 'boom 1'], ['delayed', 'boom 2'], ['failed', 'boom 3']]));
  // Exponential backoff without jitter: at least 150 ms, then 300 ms, between attempts.
  assert.equal(starts.length, 3);
  assert.ok(starts[1] - starts[0] >= 140, `second attempt ${starts[1] - starts[0]} ms after the first`);
  assert.ok(starts[2] - starts[1] >= 290, `third attempt ${starts[2] - starts[1]} ms after the second`);
});

test('UnrecoverableError fails the job at once', async (t) => {
  const name = queueName('unrecoverable');
  const queue = new Queue(name, { connection: connection() });
  t.after(() => queue.close());
  let calls = 0;
  const worker = new Worker(name, async () => {
    calls++;
    throw new UnrecoverableError('payload is nonsense');
  }, { connection: connection() });
  t.after(() => worker.close());

  const job = await queue.add('bad', {}, { attempts: 5, backoff: 10 });
  await assert.rejects(job.waitUntilFinished(10_000), /payload is nonsense/);
  const got = await queue.getJob(job.id);
  assert.ok(got);
  assert.equal(got.state, 'failed');
  assert.equal(got.attemptsMade, 1);
  assert.equal(calls, 1);
});

test('no more than concurrency processors run, and the worker leases no more jobs than that', async (t) => {
  const name = queueName('concurrency');
  const queue = new Queue(name, { connection: connection() });
  t.after(() => queue.close());
  const jobs = await queue.addBulk(Array.from({ length: 12 }, (_, i) => ({ name: 'work', data: i })));
  let running = 0;
  let most = 0;
  const gate = deferred();
  const full = deferred();
  const worker = new Worker(name, async (j) => {
    running++;
    most = Math.max(most, running);
    if (running === 3) full.resolve();
    await gate.promise;
    await sleep(50);
    running--;
    return j.data;
  }, { connection: connection(), concurrency: 3 });
  t.after(() => worker.close());

  try {
    await full.promise;
    await sleep(200); // room for a wrongly sized window to lease more
    const states = await Promise.all(jobs.map(async (j) => (await queue.getJob(j.id))?.state));
    assert.equal(states.filter((s) => s === 'active').length, 3, `states while 3 run: ${states.join(' ')}`);
    assert.equal(states.filter((s) => s === 'waiting').length, 9);
  } finally {
    gate.resolve();
  }

  for (const j of jobs) assert.equal(await queue.waitUntilFinished(j.id, 20_000), j.data);
  assert.equal(most, 3, 'with 12 jobs waiting, exactly 3 run at once');
});

test('cancelling a running job aborts job.signal and frees its slot', async (t) => {
  const name = queueName('cancel');
  const queue = new Queue(name, { connection: connection() });
  t.after(() => queue.close());
  const started = deferred<string>();
  const aborted = deferred<unknown>();
  const worker = new Worker(name, async (j) => {
    if (j.name !== 'long') return 'quick done';
    started.resolve(j.id);
    await new Promise((_, reject) => j.signal.addEventListener('abort', () => {
      aborted.resolve(j.signal.reason);
      reject(j.signal.reason);
    }));
    return 'not reached';
  }, { connection: connection(), concurrency: 1 });
  t.after(() => worker.close());
  const settled: string[] = [];
  worker.on('completed', (j: Job) => settled.push(`completed ${j.name}`));
  worker.on('failed', (j: Job) => settled.push(`failed ${j.name}`));

  const long = await queue.add('long', {});
  assert.equal(await started.promise, long.id);
  await queue.cancelJob(long.id, 'user changed their mind');
  const reason = await aborted.promise;
  assert.ok(reason instanceof JobCancelledError, `signal reason ${reason}`);
  assert.match((reason as Error).message, /user changed their mind/);

  // The slot is free again: the only slot takes the next job.
  const quick = await queue.add('quick', {});
  assert.equal(await quick.waitUntilFinished(10_000), 'quick done');
  assert.equal((await queue.getJob(long.id))?.state, 'cancelled');
  // 'completed' is emitted once the ack is answered, which may be just after the watch saw the job complete.
  await eventually(() => assert.deepEqual(settled, ['completed quick'], 'a cancelled job is neither completed nor failed'));
});

test('leases of long jobs are renewed', async (t) => {
  const name = queueName('renew');
  const queue = new Queue(name, { connection: connection() });
  t.after(() => queue.close());
  const worker = new Worker(name, async (j) => {
    await sleep(3500); // more than twice the lease
    if (j.signal.aborted) throw new Error('lost the lease');
    return 'survived';
  }, { connection: connection(), lockDuration: 1500 });
  t.after(() => worker.close());
  const job = await queue.add('slow', {}, { attempts: 1 });
  assert.equal(await job.waitUntilFinished(15_000), 'survived');
  assert.equal((await queue.getJob(job.id))?.attemptsMade, 1);
});

test('close drains: running jobs finish, unstarted ones go back unharmed', async (t) => {
  const name = queueName('close');
  const queue = new Queue(name, { connection: connection() });
  t.after(() => queue.close());
  const jobs = await queue.addBulk(Array.from({ length: 20 }, (_, i) => ({ name: 'work', data: i })));
  const firstStarted = deferred();
  const finishedByFirst = new Set<string>();
  const first = new Worker(name, async (j) => {
    firstStarted.resolve();
    await sleep(300);
    finishedByFirst.add(j.id);
    return 'first';
  }, { connection: connection(), concurrency: 4 });
  const errors: Error[] = [];
  first.on('error', (err: Error) => errors.push(err));
  await firstStarted.promise;
  await first.close();
  assert.deepEqual(errors, [], 'close ends the stream cleanly: half-close, then the server ends it');

  // When close resolves, every job the first worker finished is committed,
  // and nothing is left running or charged an attempt it never made.
  assert.ok(finishedByFirst.size >= 1 && finishedByFirst.size < 20, `first worker finished ${finishedByFirst.size}`);
  for (const j of jobs) {
    const got = await queue.getJob(j.id);
    assert.ok(got);
    if (finishedByFirst.has(j.id)) {
      assert.equal(got.state, 'completed');
    } else {
      assert.equal(got.state, 'waiting', `job ${j.id} after close`);
      assert.equal(got.attemptsMade, 0, `job ${j.id} was charged an attempt`);
    }
  }

  const second = new Worker(name, async () => 'second', { connection: connection(), concurrency: 4 });
  t.after(() => second.close());
  for (const j of jobs) {
    const want = finishedByFirst.has(j.id) ? 'first' : 'second';
    assert.equal(await queue.waitUntilFinished(j.id, 20_000), want);
    assert.equal((await queue.getJob(j.id))?.attemptsMade, 1);
  }
});
