-- Flows: trees of jobs where a parent runs after its children. The tree is
-- kept on the job rows themselves, so completing a child and updating its
-- parent are updates of two rows of one table in one statement or
-- transaction (see store/flow.go).
ALTER TABLE queued_jobs
    -- The parent this job is a child of; NULL for plain jobs and flow roots.
    -- No foreign key: retention deletes finished rows in any order, and the
    -- tree is only ever written by one transaction (EnqueueFlow).
    ADD COLUMN parent_id bigint,
    -- The root of the flow this job belongs to (the root's own id for the
    -- root); NULL for plain jobs. GetFlow (and Watch by flow) select on it.
    ADD COLUMN flow_id bigint,
    -- The caller-chosen name of this child among its siblings; the parent
    -- sees its children's results keyed by it.
    ADD COLUMN child_name text,
    -- What this child's failure (or cancellation) does to its parent.
    ADD COLUMN child_policy text,
    -- Direct children of this job, and how many of them are not finished.
    -- The parent is released when pending_children reaches 0; the counter is
    -- decremented under the parent's row lock, so the last two children
    -- finishing together release it exactly once.
    ADD COLUMN child_count integer NOT NULL DEFAULT 0,
    ADD COLUMN pending_children integer NOT NULL DEFAULT 0,
    -- While waiting_children past this time, the parent stops waiting: its
    -- unfinished children are cancelled and each child's policy decides.
    ADD COLUMN children_deadline timestamptz,
    ADD CONSTRAINT queued_jobs_child_policy_valid CHECK
        (child_policy IS NULL OR child_policy IN ('fail_parent', 'ignore', 'continue')),
    ADD CONSTRAINT queued_jobs_children_valid CHECK
        (child_count >= 0 AND pending_children >= 0 AND pending_children <= child_count);

-- A finished child updates its parent, a parent delivers its children's
-- results, cancellation walks a subtree: all look children up by parent.
CREATE INDEX queued_jobs_parent ON queued_jobs (parent_id) WHERE parent_id IS NOT NULL;

-- GetFlow and Watch by flow.
CREATE INDEX queued_jobs_flow ON queued_jobs (flow_id) WHERE flow_id IS NOT NULL;

-- The sweeper: parents whose deadline for their children has passed. Only
-- waiting parents with a deadline are in it.
CREATE INDEX queued_jobs_children_deadline ON queued_jobs (children_deadline)
    WHERE state = 'waiting_children' AND children_deadline IS NOT NULL;
