import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Queue, QueueEvents, Worker } from '../src';
import { connection, queueName, eventually } from './helpers';

test('QueueEvents reports every completion and failure, after the changes before them', async (t) => {
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
  // Changes the server reads late are folded into the next one, so only the
  // terminal events are certain; any others come before them.
  const before = (event: string, terminal: string) => {
    const i = seen.indexOf(event);
    assert.ok(i === -1 || i < seen.indexOf(terminal), seen.join('\n'));
  };
  before(`added ${good.id}`, `completed ${good.id} {"ok":true}`);
  before(`progress ${good.id} 50`, `completed ${good.id} {"ok":true}`);
  before(`added ${bad.id}`, `failed ${bad.id} nope 2`);
  before(`retrying ${bad.id} nope 1`, `failed ${bad.id} nope 2`);
  assert.ok(!seen.some((e) => e.startsWith(`failed ${good.id}`) || e.startsWith(`completed ${bad.id}`)), seen.join('\n'));
});
