package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// S7 flows: BENCHMARKS.md's "3-level flows at 200 flows/s": what a job
// costs inside a flow against the same number of plain jobs. Each flow is
// a root with two children with two children each, seven no-op jobs in one
// EnqueueFlow call; the plain-job baseline runs S3's path at the same rate
// of jobs in the same run.

// flowSize is the jobs of one flow; flowChildren gives, by position in
// pre-order (root, child, grandchild, grandchild, child, ...), how many
// children the job has.
const flowSize = 7

var flowChildren = [flowSize]int{2, 2, 0, 0, 2, 0, 0}

// flowTree builds flow number f: its jobs carry the sequence numbers
// f*7 ... f*7+6 in pre-order and the enqueue time, like every benchmark job.
func flowTree(queue string, f uint64, now time.Time) *queuedv1.FlowNode {
	seq := f * flowSize
	node := func(name, childName string) *queuedv1.FlowNode {
		n := &queuedv1.FlowNode{ChildName: childName, Job: &queuedv1.JobSpec{Queue: queue, Name: name, Payload: makePayload(seq, now)}}
		seq++
		return n
	}
	root := node("root", "")
	for c := range 2 {
		child := node("child", fmt.Sprintf("c%d", c))
		for g := range 2 {
			child.Children = append(child.Children, node("grandchild", fmt.Sprintf("g%d", g)))
		}
		root.Children = append(root.Children, child)
	}
	return root
}

func (b *bench) s7Flows(ctx context.Context) {
	jobRate := b.cfg.S7FlowRate * flowSize
	base := result{Scenario: "S7", Variant: fmt.Sprintf("plain jobs at %.0f/s (flow baseline)", jobRate)}
	baseErr := b.e.reset(ctx)
	if baseErr == nil {
		_, baseErr = b.steady(ctx, &base, steadyRun{rate: jobRate, d: b.cfg.S7Duration})
	}
	b.emit(base, baseErr)

	r := result{Scenario: "S7", Variant: fmt.Sprintf("flows of 7 jobs (3 levels) at %.0f/s", b.cfg.S7FlowRate)}
	err := b.flows(ctx, &r)
	if err == nil && baseErr == nil && base.Jobs > 0 && r.Jobs > 0 {
		cpu := func(x result) float64 { return (x.CPUPostgres + x.CPUQueued) / float64(x.Jobs) }
		r.extra("commits_per_job_vs_plain", fmt.Sprintf("%.2f", r.CommitsPerJob/base.CommitsPerJob))
		r.extra("wal_bytes_per_job_vs_plain", fmt.Sprintf("%.2f", r.WALBytesPerJob/base.WALBytesPerJob))
		r.extra("server_cpu_per_job_vs_plain", fmt.Sprintf("%.2f", cpu(r)/cpu(base)))
	}
	b.emit(r, err)
}

// flowRoot is one flow as its producer saw it.
type flowRoot struct {
	id       int64     // the root's id (the flow's), 0 when EnqueueFlow failed
	enqueued time.Time // when EnqueueFlow was called
}

func (b *bench) flows(ctx context.Context, r *result) error {
	if err := b.e.reset(ctx); err != nil {
		return err
	}
	q := b.queue()
	nFlows := uint64(b.cfg.S7FlowRate*b.cfg.S7Duration.Seconds()*1.2) + 100
	capacity := int(nFlows) * flowSize
	rec := newRecorder(capacity, 0, false)
	// A parent must be handed out with every child completed, and with
	// the children its position in the tree gives it.
	var early, misshapen atomic.Int64
	onJob := func(j leasedJob) {
		rec.start(j.Payload)
		if seq, _, ok := readPayload(j.Payload); ok {
			if j.Children != flowChildren[seq%flowSize] {
				misshapen.Add(1)
			}
			if j.ChildrenCompleted != j.Children {
				early.Add(1)
			}
		}
	}
	ws, err := startWorkers(ctx, b.e, b.cfg.Workers, workerParams{Queue: q, Window: b.cfg.Window, Rec: rec, OnJob: onJob})
	if err != nil {
		return err
	}
	var clients []queuedv1.FlowServiceClient
	for range 4 {
		conn, _, err := b.e.dial()
		if err != nil {
			stopWorkers(ws)
			return err
		}
		defer conn.Close()
		clients = append(clients, queuedv1.NewFlowServiceClient(conn))
	}
	roots := make([]flowRoot, nFlows)
	var next atomic.Uint64
	var errs atomic.Int64
	call := func() error {
		f := next.Add(1) - 1
		if f >= nFlows {
			return nil
		}
		now := time.Now()
		resp, err := clients[f%uint64(len(clients))].EnqueueFlow(ctx, &queuedv1.EnqueueFlowRequest{Root: flowTree(q, f, now)})
		if err != nil {
			errs.Add(1)
			return err
		}
		roots[f] = flowRoot{id: resp.GetFlowId(), enqueued: now}
		for k := range uint64(flowSize) {
			rec.markEnqueued(f*flowSize + k)
		}
		return nil
	}

	m, err := b.e.startMeter(ctx)
	if err != nil {
		stopWorkers(ws)
		return err
	}
	start := time.Now()
	achieved, perr := openLoop(ctx, b.cfg.S7FlowRate, b.cfg.S7Duration, 64, call)
	r.extra("offered_flows_per_s", fmt.Sprintf("%.0f", achieved))
	drained := waitDelivered(ctx, rec, capacity, b.cfg.DrainTimeout)
	werr := stopWorkers(ws)
	if n := errs.Load(); n > 0 {
		r.extra("enqueue_errors", n)
	}

	// Roots as the table has them after the last ack committed.
	rows, err := b.e.pool.Query(ctx, `SELECT id, state::text, finished_at FROM queued_jobs WHERE queue = $1 AND parent_id IS NULL`, q)
	if err != nil {
		return err
	}
	type rootRow struct {
		state    string
		finished *time.Time
	}
	table := map[int64]rootRow{}
	for rows.Next() {
		var id int64
		var x rootRow
		if err := rows.Scan(&id, &x.state, &x.finished); err != nil {
			return err
		}
		table[id] = x
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var lat []int64
	var completed, notCompleted int64
	last := start
	for _, fr := range roots[:min(next.Load(), nFlows)] {
		if fr.id == 0 {
			continue
		}
		x, ok := table[fr.id]
		if !ok || x.state != "completed" || x.finished == nil {
			notCompleted++
			continue
		}
		completed++
		lat = append(lat, int64(x.finished.Sub(fr.enqueued)))
		if x.finished.After(last) {
			last = *x.finished
		}
		delete(table, fr.id)
	}
	elapsed := last.Sub(start)

	c := rec.check(capacity)
	if err := m.finish(ctx, r, c.WorkedOnce+c.Duplicates, elapsed); err != nil {
		return err
	}
	r.setLatency("flow_enqueue_to_root_completed", lat)
	left, err := b.unfinished(ctx, q)
	if err != nil {
		return err
	}
	r.Check = c
	r.extra("flows_per_s", fmt.Sprintf("%.0f", float64(completed)/elapsed.Seconds()))
	r.extra("roots_completed", completed)
	for k, n := range map[string]int64{
		"roots_not_completed":                 notCompleted,
		"unknown_roots":                       int64(len(table)),
		"unfinished_rows":                     left,
		"parents_leased_before_children_done": early.Load(),
		"jobs_with_wrong_children":            misshapen.Load(),
	} {
		if n > 0 {
			r.extra(k, n)
		}
	}
	r.ExactlyOnce = c.ok() && left == 0 && drained && werr == nil && notCompleted == 0 && len(table) == 0 &&
		early.Load() == 0 && misshapen.Load() == 0
	switch {
	case !drained:
		return fmt.Errorf("not every job was received within %v", b.cfg.DrainTimeout)
	case perr != nil:
		return fmt.Errorf("%d EnqueueFlow calls failed, the first: %w", errs.Load(), perr)
	}
	return werr
}
