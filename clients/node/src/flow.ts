// FlowProducer: trees of jobs where a parent runs after its children (BullMQ's FlowProducer).
import { call, Connection, ConnectionOptions } from './connection';
import type { FlowJobMsg, FlowNodeMsg, ChildFailurePolicyName } from './proto';
import { durationFromMs, jobId } from './codec';
import { Job, JobsOptions, JobSource } from './job';
import { toSpec } from './queue';
import { wrap } from './errors';
import { waitForJob } from './watch';

/** FlowJobOptions are a flow node's job options plus what its failure does to its parent. */
export interface FlowJobOptions extends JobsOptions {
  /** BullMQ's: the parent fails at once when this child fails (queued's default). */
  failParentOnFailure?: boolean;
  /** BullMQ's: the parent still runs when its children are done, and sees this failure. */
  ignoreDependencyOnFailure?: boolean;
  /** BullMQ's: the parent runs as soon as this child fails; its other children go on. */
  continueParentOnFailure?: boolean;
  /** How long this job waits for its children, in ms from enqueue; then unfinished ones are cancelled and their policies decide. */
  childrenTimeout?: number;
}

/** FlowJob is a node of a flow to add. */
export interface FlowJob {
  /** The job's name (what workers dispatch on). */
  name: string;
  queueName: string;
  data?: unknown;
  opts?: FlowJobOptions;
  /** The key under which the parent sees this child's result; default its index. Unique among siblings. */
  childName?: string;
  children?: FlowJob[];
}

/** JobNode is an added flow: each job with its children (BullMQ's JobNode). */
export interface JobNode {
  job: Job;
  children?: JobNode[];
}

function policy(o: FlowJobOptions | undefined): ChildFailurePolicyName {
  const set = [o?.failParentOnFailure, o?.ignoreDependencyOnFailure, o?.continueParentOnFailure].filter(Boolean).length;
  if (set > 1) throw new TypeError('set at most one of failParentOnFailure, ignoreDependencyOnFailure, continueParentOnFailure');
  if (o?.ignoreDependencyOnFailure) return 'CHILD_FAILURE_POLICY_IGNORE';
  if (o?.continueParentOnFailure) return 'CHILD_FAILURE_POLICY_CONTINUE';
  if (o?.failParentOnFailure) return 'CHILD_FAILURE_POLICY_FAIL_PARENT';
  return 'CHILD_FAILURE_POLICY_UNSPECIFIED';
}

function toNode(f: FlowJob, isRoot: boolean): FlowNodeMsg {
  return {
    job: toSpec(f.queueName, f.name, f.data, f.opts),
    childName: isRoot ? '' : (f.childName ?? ''),
    onFailure: isRoot ? 'CHILD_FAILURE_POLICY_UNSPECIFIED' : policy(f.opts),
    childrenTimeout: durationFromMs(f.opts?.childrenTimeout),
    children: (f.children ?? []).map((c) => toNode(c, false)),
  };
}

/**
 * FlowProducer adds flows: a parent job waits in 'waiting-children' until
 * its children (in any queues, at any depth) have finished, then runs with
 * their results: job.getChildrenValues() in its processor. The whole tree
 * is inserted in one transaction.
 */
export class FlowProducer implements JobSource {
  private readonly conn: Connection;

  constructor(opts: { connection?: ConnectionOptions } = {}) {
    this.conn = new Connection(opts.connection);
  }

  /** add inserts the tree and returns it with every job's id; the root's id is the flow's. */
  async add(flow: FlowJob): Promise<JobNode> {
    let res;
    try {
      res = await call(this.conn.flows, this.conn.flows.EnqueueFlow, { root: toNode(flow, true) });
    } catch (err) {
      throw wrap(`add flow ${flow.name}`, err);
    }
    return this.toJobNode(res.root);
  }

  /** getFlow returns the flow that job id belongs to, with every job's current state. */
  async getFlow(id: string | number): Promise<JobNode> {
    try {
      const res = await call(this.conn.flows, this.conn.flows.GetFlow, { id: jobId(id) });
      return this.toJobNode(res.root);
    } catch (err) {
      throw wrap(`get flow of job ${id}`, err);
    }
  }

  /** getJob returns one job of any queue, or undefined. */
  async getJob(id: string): Promise<Job | undefined> {
    const n = await this.getFlow(id).catch(() => undefined);
    const find = (x: JobNode | undefined): Job | undefined =>
      !x ? undefined : x.job.id === id ? x.job : (x.children ?? []).map(find).find(Boolean);
    return find(n);
  }

  /** waitUntilFinished resolves with a job's result once it completes; see Queue.waitUntilFinished. */
  async waitUntilFinished(id: string | number, timeoutMs?: number): Promise<unknown> {
    return new Job(await waitForJob(this.conn, id, timeoutMs)).returnvalue;
  }

  async close(): Promise<void> {
    this.conn.close();
  }

  private toJobNode(f: FlowJobMsg): JobNode {
    const node: JobNode = { job: new Job(f.job, { source: this }) };
    if (f.children?.length) node.children = f.children.map((c) => this.toJobNode(c));
    return node;
  }
}
