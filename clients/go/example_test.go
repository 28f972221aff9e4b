package queued_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"testing"

	queued "github.com/queued-dev/queued/clients/go"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// TestMain starts one real server for the runnable examples, which have no
// *testing.T of their own, and points QUEUED_ADDR at it as a user would.
func TestMain(m *testing.M) {
	srv, stop, err := queuedtest.StartProcess()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start a server for the examples:", err)
		os.Exit(1)
	}
	os.Setenv("QUEUED_ADDR", srv.GRPCAddr())
	code := m.Run()
	stop()
	os.Exit(code)
}

type Signup struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

// A producer enqueues a job and a worker works it. The worker is stopped
// once the job is done, to keep the example short; a real worker runs
// until its process is told to stop.
func Example() {
	ctx := context.Background()
	client, err := queued.Dial(ctx, os.Getenv("QUEUED_ADDR"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	job, err := client.EnqueueJSON(ctx, "emails", "send_welcome_email",
		Signup{Email: "ada@example.com", Name: "Ada"},
		queued.UniqueKey("welcome-email:ada@example.com"))
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := context.WithCancel(ctx)
	w := queued.NewWorker(client, queued.WorkerConfig{Queues: []string{"emails"}, Concurrency: 4})
	queued.HandleJSON(w, "send_welcome_email", func(ctx context.Context, job *queued.Job, s Signup) error {
		fmt.Printf("Welcome, %s! (to %s)\n", s.Name, s.Email)
		stop() // only for the example
		return nil
	})
	if err := w.Run(ctx); err != nil { // returns after a graceful shutdown
		log.Fatal(err)
	}

	done, err := client.GetJob(context.Background(), job.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("job", done.State, "after", done.Attempt, "attempt")
	// Output:
	// Welcome, Ada! (to ada@example.com)
	// job completed after 1 attempt
}

// Handlers return an error to retry and wrap it with Permanent to give up.
func ExampleWorker_Handle() {
	ctx := context.Background()
	client, err := queued.Dial(ctx, os.Getenv("QUEUED_ADDR"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	job, err := client.Enqueue(ctx, "images", "resize", []byte("not-an-image"), queued.MaxAttempts(5))
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := context.WithCancel(ctx)
	w := queued.NewWorker(client, queued.WorkerConfig{Queues: []string{"images"}})
	w.Handle("resize", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		defer stop() // only for the example
		if string(job.Payload) == "not-an-image" {
			return nil, queued.Permanent(fmt.Errorf("payload is not an image"))
		}
		return []byte("resized"), nil
	})
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}

	failed, err := client.GetJob(context.Background(), job.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(failed.State, failed.Attempt, failed.Errors[0].Message)
	// Output: failed 1 payload is not an image
}
