package grpcserver_test

import (
	"testing"
	"time"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// TestWatchFlowReportsEveryJobOfTheFlowAndNothingElse watches a flow by one
// of its children: the watch starts with the current state of all three
// jobs, then reports each completing bottom-up, and never a job outside the
// flow on the same queues.
func TestWatchFlowReportsEveryJobOfTheFlowAndNothingElse(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	flow := enqueueFlow(t, s, rootNode("fw", "parent", node("fw", "a"), node("fw", "b")))
	ids := flowIDs(flow.GetRoot())
	outsider := enqueue(t, s, spec("fw"))[0].GetId()

	wa := openWatch(t, s.Conn, &queuedv1.WatchRequest{FlowId: ids["a"], Kinds: []queuedv1.WatchEventKind{kindCurrent, kindCompleted}})
	current := map[int64]queuedv1.JobState{}
	for range 3 {
		e := wa.nextJob(10 * time.Second)
		if e.GetKind() != kindCurrent {
			t.Fatalf("event %v, want the current state first", e)
		}
		current[e.GetJob().GetId()] = e.GetJob().GetState()
	}
	if current[ids["root"]] != queuedv1.JobState_JOB_STATE_WAITING_CHILDREN || current[ids["a"]] != queuedv1.JobState_JOB_STATE_AVAILABLE || current[ids["b"]] != queuedv1.JobState_JOB_STATE_AVAILABLE {
		t.Fatalf("current states = %v, want parent waiting and both children available", current)
	}
	wa.live()

	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"fw"}, Window: 10})
	go func() {
		for j := range w.jobs {
			w.ack(j, nil)
		}
	}()
	completed := map[int64]bool{}
	for len(completed) < 3 {
		e := wa.nextJob(10 * time.Second)
		if e.GetKind() != kindCompleted {
			t.Fatalf("event kind %v, want only completions", e.GetKind())
		}
		if id := e.GetJob().GetId(); id == outsider {
			t.Fatalf("flow watch reported job %d outside the flow", id)
		}
		completed[e.GetJob().GetId()] = true
	}
	for _, name := range []string{"root", "a", "b"} {
		if !completed[ids[name]] {
			t.Fatalf("no completion for %s (%d): %v", name, ids[name], completed)
		}
	}
}
