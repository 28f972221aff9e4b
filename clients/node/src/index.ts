// @queued/client: a TypeScript client for queued with a BullMQ-shaped API.
export { Queue, QueueOptions } from './queue';
export { Worker, WorkerOptions, Processor } from './worker';
export { QueueEvents } from './events';
export { FlowProducer, FlowJob, FlowJobOptions, JobNode } from './flow';
export { Job, JobsOptions, BackoffOptions, AttemptError, ChildOutcome } from './job';
export { JobState } from './codec';
export { ConnectionOptions, DEFAULT_ADDRESS } from './connection';
export {
  UnrecoverableError, QueuedError, JobFailedError, JobCancelledError, LeaseLostError,
  ShutdownTimeoutError, TimeoutError,
} from './errors';
