// Loading of the queued API from its .proto files, and the shapes of the
// messages this package sends and receives as @grpc/proto-loader decodes
// them (camelCase fields, int64 as decimal strings, enums as their names,
// bytes as Buffers, oneofs named by a virtual field).
import * as path from 'node:path';
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export interface Duration { seconds: string | number; nanos: number }
export interface Timestamp { seconds: string | number; nanos: number }

export type JobStateName =
  | 'JOB_STATE_UNSPECIFIED' | 'JOB_STATE_SCHEDULED' | 'JOB_STATE_AVAILABLE' | 'JOB_STATE_RUNNING'
  | 'JOB_STATE_WAITING_CHILDREN' | 'JOB_STATE_COMPLETED' | 'JOB_STATE_FAILED' | 'JOB_STATE_CANCELLED';

export type ChildFailurePolicyName =
  | 'CHILD_FAILURE_POLICY_UNSPECIFIED' | 'CHILD_FAILURE_POLICY_FAIL_PARENT'
  | 'CHILD_FAILURE_POLICY_IGNORE' | 'CHILD_FAILURE_POLICY_CONTINUE';

export interface BackoffMsg {
  kind: 'KIND_UNSPECIFIED' | 'KIND_EXPONENTIAL' | 'KIND_FIXED';
  base?: Duration | null;
  max?: Duration | null;
  jitter?: number;
}

export interface JobSpecMsg {
  queue: string;
  name: string;
  payload?: Buffer;
  metadata?: Record<string, string>;
  priority?: number;
  runAt?: Timestamp | null;
  delay?: Duration | null;
  maxAttempts?: number;
  backoff?: BackoffMsg | null;
  uniqueKey?: string;
}

export interface AttemptErrorMsg { attempt: number; message: string; at: Timestamp | null }

export interface JobMsg {
  id: string;
  queue: string;
  name: string;
  payload: Buffer;
  metadata: Record<string, string>;
  priority: number;
  state: JobStateName;
  attempt: number;
  maxAttempts: number;
  backoff: BackoffMsg | null;
  uniqueKey: string;
  runAt: Timestamp | null;
  createdAt: Timestamp | null;
  startedAt: Timestamp | null;
  finishedAt: Timestamp | null;
  result: Buffer;
  errors: AttemptErrorMsg[];
  progress: Buffer;
  leasedBy: string;
  leaseExpiresAt: Timestamp | null;
}

export interface ChildOutcomeMsg {
  jobId: string;
  childName: string;
  state: JobStateName;
  result: Buffer;
  error: string;
  onFailure: ChildFailurePolicyName;
}

export interface LeasedJobMsg {
  job: JobMsg;
  leaseToken: string;
  leaseExpiresAt: Timestamp | null;
  children: ChildOutcomeMsg[];
}

export interface ReplyMsg {
  ref: string;
  jobId: string;
  code: number;
  message: string;
  leaseExpiresAt: Timestamp | null;
  state: JobStateName;
}

export interface LeaseResponseMsg {
  msg: 'opened' | 'job' | 'reply' | 'cancelled' | 'ping';
  opened?: { sessionId: string; leaseDuration: Duration | null; pingInterval: Duration | null };
  job?: LeasedJobMsg;
  reply?: ReplyMsg;
  cancelled?: { jobId: string; reason: string };
}

export interface FlowNodeMsg {
  job: JobSpecMsg;
  childName?: string;
  onFailure?: ChildFailurePolicyName;
  children?: FlowNodeMsg[];
  childrenTimeout?: Duration | null;
}

export interface FlowJobMsg {
  job: JobMsg;
  childName: string;
  onFailure: ChildFailurePolicyName;
  pendingChildren: number;
  childrenDeadline: Timestamp | null;
  parentId: string;
  children: FlowJobMsg[];
}

export type WatchEventKindName =
  | 'WATCH_EVENT_KIND_UNSPECIFIED' | 'WATCH_EVENT_KIND_CURRENT' | 'WATCH_EVENT_KIND_ENQUEUED'
  | 'WATCH_EVENT_KIND_AVAILABLE' | 'WATCH_EVENT_KIND_LEASED' | 'WATCH_EVENT_KIND_PROGRESS'
  | 'WATCH_EVENT_KIND_RETRY_SCHEDULED' | 'WATCH_EVENT_KIND_RELEASED' | 'WATCH_EVENT_KIND_WAITING_CHILDREN'
  | 'WATCH_EVENT_KIND_COMPLETED' | 'WATCH_EVENT_KIND_FAILED' | 'WATCH_EVENT_KIND_CANCELLED'
  | 'WATCH_EVENT_KIND_CHECKPOINT';

export interface WatchEventMsg {
  kind: WatchEventKindName;
  job: JobMsg | null;
  cursor: string;
  error: AttemptErrorMsg | null;
}

export interface WatchRequestMsg {
  jobIds?: string[];
  queue?: string;
  names?: string[];
  kinds?: WatchEventKindName[];
  flowId?: string;
  cursor?: string;
}

type Callback<T> = (err: grpc.ServiceError | null, res?: T) => void;
type Unary<Req, Res> = (req: Req, opts: grpc.CallOptions, cb: Callback<Res>) => grpc.ClientUnaryCall;

/** The QueueService stub as proto-loader builds it. */
export interface QueueServiceClient extends grpc.Client {
  Enqueue: Unary<{ jobs: JobSpecMsg[] }, { jobs: { id: string; duplicate: boolean; state: JobStateName }[] }>;
  Lease(opts?: grpc.CallOptions): grpc.ClientDuplexStream<object, LeaseResponseMsg>;
  Ack: Unary<object, object>;
  Nack: Unary<object, { state: JobStateName }>;
  Extend: Unary<object, { leaseExpiresAt: Timestamp | null }>;
  Release: Unary<object, object>;
  UpdateProgress: Unary<object, object>;
  GetJob: Unary<{ id: string }, { job: JobMsg }>;
  CancelJob: Unary<{ id: string; reason: string }, { job: JobMsg }>;
}

export interface WatchServiceClient extends grpc.Client {
  Watch(req: WatchRequestMsg, opts?: grpc.CallOptions): grpc.ClientReadableStream<WatchEventMsg>;
}

export interface FlowServiceClient extends grpc.Client {
  EnqueueFlow: Unary<{ root: FlowNodeMsg }, { flowId: string; root: FlowJobMsg }>;
  GetFlow: Unary<{ id: string }, { flowId: string; root: FlowJobMsg }>;
}

type ClientCtor<T> = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ClientOptions) => T;

interface Services {
  QueueService: ClientCtor<QueueServiceClient>;
  WatchService: ClientCtor<WatchServiceClient>;
  FlowService: ClientCtor<FlowServiceClient>;
}

let loaded: Services | undefined;

/** protoRoot is the directory that holds api/proto/queued/v1/*.proto. */
function protoRoot(): string {
  // dist/src/proto.js -> <package>/proto, filled by scripts/copy-protos.js.
  const root = path.resolve(__dirname, '..', '..', 'proto');
  if (!fs.existsSync(path.join(root, 'api', 'proto', 'queued', 'v1', 'queue.proto'))) {
    throw new Error(`@queued/client: the API's .proto files are missing under ${root}; run "npm run build"`);
  }
  return root;
}

/** services loads the .proto files once and returns the client classes. */
export function services(): Services {
  if (loaded) return loaded;
  const files = ['queue', 'watch', 'flow'].map((f) => `api/proto/queued/v1/${f}.proto`);
  const def = protoLoader.loadSync(files, {
    includeDirs: [protoRoot()],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { queued: { v1: Services } };
  loaded = pkg.queued.v1;
  return loaded;
}
