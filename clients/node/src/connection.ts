// One gRPC channel to a queued server and the service stubs on it.
import * as grpc from '@grpc/grpc-js';
import { services, QueueServiceClient, WatchServiceClient, FlowServiceClient } from './proto';

/** ConnectionOptions says where the queued server is (BullMQ's `connection`). */
export interface ConnectionOptions {
  /** host:port of a queued server; default 127.0.0.1:7070. */
  address?: string;
  /** Channel credentials; default insecure (plaintext). */
  credentials?: grpc.ChannelCredentials;
  /** Extra gRPC channel options. */
  channelOptions?: grpc.ChannelOptions;
}

export const DEFAULT_ADDRESS = '127.0.0.1:7070';

/** Stubs of every queued service sharing one channel. */
export class Connection {
  readonly queue: QueueServiceClient;
  readonly watch: WatchServiceClient;
  readonly flows: FlowServiceClient;
  readonly address: string;

  constructor(opts: ConnectionOptions = {}) {
    const s = services();
    this.address = opts.address ?? DEFAULT_ADDRESS;
    const creds = opts.credentials ?? grpc.credentials.createInsecure();
    this.queue = new s.QueueService(this.address, creds, {
      // Keep idle lease streams and watches alive through NATs and proxies.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_permit_without_calls': 1,
      ...opts.channelOptions,
    });
    const channelOverride = this.queue.getChannel() as grpc.Channel;
    this.watch = new s.WatchService(this.address, creds, { channelOverride });
    this.flows = new s.FlowService(this.address, creds, { channelOverride });
  }

  close(): void {
    this.queue.close();
  }
}

/** How long a unary call may take unless the caller says otherwise. */
export const UNARY_TIMEOUT_MS = 10_000;

type Unary<Req, Res> = (req: Req, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown;

/** call runs a unary RPC as a promise, with a deadline. */
export function call<Req, Res>(client: grpc.Client, method: Unary<Req, Res>, req: Req, timeoutMs = UNARY_TIMEOUT_MS): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) reject(err);
      else resolve(res as Res);
    });
  });
}
