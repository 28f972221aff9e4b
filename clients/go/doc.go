// Package queued is the Go client of queued, a job queue on PostgreSQL.
//
// A Client enqueues and inspects jobs:
//
//	client, err := queued.Dial(ctx, "127.0.0.1:7070")
//	job, err := client.EnqueueJSON(ctx, "emails", "send_welcome_email", Signup{Email: "ada@example.com"},
//		queued.UniqueKey("welcome:ada@example.com"), queued.MaxAttempts(5))
//
// A Worker runs handlers for the jobs of some queues:
//
//	w := queued.NewWorker(client, queued.WorkerConfig{Queues: []string{"emails"}, Concurrency: 8})
//	queued.HandleJSON(w, "send_welcome_email", func(ctx context.Context, job *queued.Job, s Signup) error {
//		return mailer.Send(ctx, s.Email)
//	})
//	err = w.Run(ctx) // until ctx ends, then a graceful shutdown
//
// A handler's nil error completes the job; any other error fails the
// attempt, and the job is retried with its backoff until its attempts run
// out. Wrap an error with Permanent to fail the job at once. A panic is an
// error too. The handler's context ends when the job is cancelled, when the
// worker loses its lease, or when shutdown runs out of time.
//
// Under the hood the worker holds one bidirectional Lease stream. It asks
// for exactly as many jobs as it has free handler slots, renews leases of
// the jobs it holds, and reconnects with backoff when the server or the
// network goes away; a job leased before a break is still settled after
// it, as long as its lease holds. Every settlement is fenced by the job's
// lease token, so a late or repeated ack never completes a job that was
// handed to someone else.
package queued
