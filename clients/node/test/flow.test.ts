import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { FlowProducer, Queue, Worker, Job } from '../src';
import { connection, queueName } from './helpers';

test('a flow runs bottom-up and the parent sees its children results', async (t) => {
  const parents = queueName('flow-parents');
  const parts = queueName('flow-parts');
  const flows = new FlowProducer({ connection: connection() });
  t.after(() => flows.close());
  const order: string[] = [];

  const partWorker = new Worker(parts, async (j) => {
    order.push(`${j.name}:${j.data.n}`);
    if (j.name === 'sum') {
      // A middle node: its own children ran first.
      const values = await j.getChildrenValues<number>();
      return Object.values(values).reduce((a, b) => a + b, 0);
    }
    return j.data.n * 10;
  }, { connection: connection(), concurrency: 4 });
  t.after(() => partWorker.close());
  let parentChildren: Job['children'] = [];
  const parentWorker = new Worker(parents, async (j) => {
    order.push(`${j.name}`);
    parentChildren = j.children;
    const values = await j.getChildrenValues<number>();
    return { total: values.a + values.b, keys: Object.keys(values).sort() };
  }, { connection: connection() });
  t.after(() => parentWorker.close());

  const tree = await flows.add({
    name: 'report',
    queueName: parents,
    data: {},
    children: [
      { name: 'part', queueName: parts, data: { n: 1 }, childName: 'a' },
      {
        name: 'sum', queueName: parts, data: { n: 0 }, childName: 'b',
        children: [
          { name: 'part', queueName: parts, data: { n: 2 } },
          { name: 'part', queueName: parts, data: { n: 3 } },
        ],
      },
    ],
  });
  assert.equal(tree.job.state, 'waiting-children');
  assert.equal(tree.children?.length, 2);
  assert.equal(tree.children?.[1].children?.length, 2);

  const result = await flows.waitUntilFinished(tree.job.id, 20_000);
  assert.deepEqual(result, { total: 10 + 50, keys: ['a', 'b'] });
  // Every child ran before its parent.
  assert.equal(order.at(-1), 'report');
  assert.ok(order.indexOf('sum:0') > order.indexOf('part:2') && order.indexOf('sum:0') > order.indexOf('part:3'), order.join(' '));
  assert.deepEqual(parentChildren.map((c) => [c.childName, c.state, c.returnvalue]).sort(),
    [['a', 'completed', 10], ['b', 'completed', 50]]);

  const stored = await flows.getFlow(tree.children![0].job.id);
  assert.equal(stored.job.id, tree.job.id);
  assert.equal(stored.job.state, 'completed');
  const queue = new Queue(parents, { connection: connection() });
  t.after(() => queue.close());
  assert.deepEqual((await queue.getJob(tree.job.id))?.returnvalue, { total: 60, keys: ['a', 'b'] });
});

test('a failing child with ignoreDependencyOnFailure lets the parent run and see the failure', async (t) => {
  const q = queueName('flow-ignore');
  const flows = new FlowProducer({ connection: connection() });
  t.after(() => flows.close());
  const worker = new Worker(q, async (j) => {
    if (j.name === 'bad') throw new Error('child broke');
    if (j.name === 'parent') return { ok: await j.getChildrenValues(), failed: await j.getFailedChildrenValues() };
    return 'fine';
  }, { connection: connection(), concurrency: 2 });
  t.after(() => worker.close());

  const tree = await flows.add({
    name: 'parent', queueName: q,
    children: [
      { name: 'good', queueName: q, childName: 'good' },
      { name: 'bad', queueName: q, childName: 'bad', opts: { attempts: 1, ignoreDependencyOnFailure: true } },
    ],
  });
  assert.deepEqual(await tree.job.waitUntilFinished(20_000), { ok: { good: 'fine' }, failed: { bad: 'child broke' } });
});
