import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Queue, QueueEvents, Worker } from '../src';
import { connection, queueName, eventually } from './helpers';

test('QueueEvents reports added, progress, retrying, completed and failed', async (t) => {
  const name = queueName('events');
  const events = new QueueEvents(name, { connection: connection() });
  const queue = new Queue(name, { connection: connection() });
  const seen: string[] = [];
  for (const kind of ['added', 'progress', 'retrying', 'completed', 'failed']) {
    events.on(kind, (e: { jobId: string; returnvalue?: unknown; failedReason?: string; data?: unknown }) =>
      seen.push(`${kind} ${e.jobId}${e.returnvalue !== undefined ? ` ${JSON.stringify(e.returnvalue)}` : ''}${e.failedReason ? ` ${e.failedReason}` : ''}${e.data !== undefined ? ` ${JSON.stringify(e.data)}` : ''}`));
  }
  await events.waitUntilReady();
  const worker = new Worker(name, async (j) => {
    if (j.name === 'bad') throw new Error(`nope ${j.attemptsMade}`);
    await j.updateProgress(50);
    return { ok: true };
  }, { connection: connection() });
  t.after(async () => {
    await worker.close();
    await queue.close();
    await events.close();
  });

  const good = await queue.add('good', {});
  const bad = await queue.add('bad', {}, { attempts: 2, backoff: 50 });
  await eventually(() => {
    assert.ok(seen.includes(`completed ${good.id} {"ok":true}`), seen.join('\n'));
    assert.ok(seen.includes(`failed ${bad.id} nope 2`), seen.join('\n'));
  });
  assert.ok(seen.includes(`added ${good.id}`) && seen.includes(`added ${bad.id}`), seen.join('\n'));
  assert.ok(seen.includes(`retrying ${bad.id} nope 1`), seen.join('\n'));
  // Progress may be folded into a later change, but never after the job finished.
  const progress = seen.indexOf(`progress ${good.id} 50`);
  assert.ok(progress === -1 || progress < seen.indexOf(`completed ${good.id} {"ok":true}`), seen.join('\n'));
});
