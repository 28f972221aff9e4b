import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { Queue, Worker } from '../src';
import { connection, queueName, deferred, eventually } from './helpers';

/** A TCP proxy to the server whose connections the test can cut, like a network failure. */
async function startProxy(target: string): Promise<{ address: string; cut(): void; close(): Promise<void> }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => { client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port: local } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${local}`,
    cut: () => { for (const s of sockets) s.destroy(); },
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}

test('the worker reconnects after the connection breaks; the job it was running runs again', async (t) => {
  const name = queueName('reconnect');
  const proxy = await startProxy(connection().address!);
  const queue = new Queue(name, { connection: connection() });

  const started = deferred();
  const release = deferred();
  const worker = new Worker(name, async (j) => {
    if (j.name === 'held' && j.attemptsMade === 1) {
      started.resolve();
      await release.promise;
    }
    return `${j.name} done on attempt ${j.attemptsMade}`;
  }, { connection: { address: proxy.address }, concurrency: 2, reconnectMin: 50, reconnectMax: 200 });
  t.after(async () => {
    // The worker first: it may still be waiting for an ack's reply through the proxy.
    await worker.close();
    await queue.close();
    await proxy.close();
  });
  const errors: Error[] = [];
  worker.on('error', (err: Error) => errors.push(err));
  let readies = 0;
  worker.on('ready', () => readies++);

  const held = await queue.add('held', {});
  await started.promise;
  proxy.cut(); // the stream breaks while attempt 1 runs

  // The server took the job back when the stream ended and hands it to the
  // reconnected worker, which has a slot left while attempt 1 still runs.
  assert.equal(await queue.waitUntilFinished(held.id, 20_000), 'held done on attempt 2');
  assert.ok(readies >= 2, `worker opened ${readies} streams`);
  // Attempt 1 finishing late is refused: its lease is gone.
  release.resolve();
  await eventually(() => assert.ok(errors.some((e) => /FAILED_PRECONDITION/.test(e.message)), errors.join('; ')));
  const got = await queue.getJob(held.id);
  assert.ok(got);
  assert.equal(got.state, 'completed');
  assert.equal(got.attemptsMade, 2);
  assert.match(got.attemptErrors[0]?.message ?? '', /worker went away/);

  // Both slots are free again and take new work.
  const next = await queue.addBulk([{ name: 'next', data: 1 }, { name: 'next', data: 2 }]);
  for (const j of next) assert.equal(await queue.waitUntilFinished(j.id, 20_000), 'next done on attempt 1');
});
