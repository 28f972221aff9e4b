// Command await-result shows the CPU-heavy endpoint pattern: an HTTP
// handler hands the heavy part of a request to a worker through queued and
// answers with the worker's result, or with 504 and the job id when the
// result takes longer than the request may wait.
//
//	go run ./examples/await-result -role worker &      # one or many, anywhere
//	go run ./examples/await-result -role api &
//	curl 'localhost:8081/primes?below=5000000'
//
// The API never does the heavy work itself, so it stays responsive however
// many requests arrive; add workers to add capacity.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
)

// Queue and job name shared by the API and the worker.
const (
	queueName = "cpu"
	jobName   = "count_primes"
)

// Request is the job payload; Answer is the job result.
type Request struct {
	Below int `json:"below"`
}

type Answer struct {
	Below  int `json:"below"`
	Primes int `json:"primes"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	role := flag.String("role", "api", "api or worker")
	listen := flag.String("listen", "127.0.0.1:8081", "HTTP address of the API")
	server := flag.String("server", os.Getenv("QUEUED_ADDR"), "queued address (QUEUED_ADDR)")
	wait := flag.Duration("wait", 10*time.Second, "how long a request waits for its result")
	flag.Parse()
	if err := run(ctx, *role, *listen, *server, *wait); err != nil {
		fmt.Fprintln(os.Stderr, "await-result:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, role, listen, server string, wait time.Duration) error {
	client, err := queued.Dial(ctx, server)
	if err != nil {
		return err
	}
	defer client.Close()
	switch role {
	case "worker":
		return newWorker(client).Run(ctx)
	case "api":
		lis, err := net.Listen("tcp", listen)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: handler(client, wait), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			<-ctx.Done()
			shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdown)
		}()
		fmt.Printf("API on http://%s/primes?below=N\n", lis.Addr())
		if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	return fmt.Errorf("unknown role %q: want api or worker", role)
}

// handler answers GET /primes?below=N with the worker's count.
func handler(client *queued.Client, wait time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /primes", func(w http.ResponseWriter, r *http.Request) {
		below, err := strconv.Atoi(r.URL.Query().Get("below"))
		if err != nil || below < 2 || below > 50_000_000 {
			http.Error(w, "want ?below=N with 2 <= N <= 50000000", http.StatusBadRequest)
			return
		}
		// The request's own context bounds the wait too: a client that
		// hangs up stops the waiting (the job still runs).
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		job, err := client.EnqueueAndWait(ctx, queueName, jobName, queued.JSON(Request{Below: below}))
		var failed *queued.JobFailedError
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusGatewayTimeout)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "still working; ask queued for the job later"})
			return
		case errors.As(err, &failed):
			http.Error(w, failed.Error(), http.StatusUnprocessableEntity)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Job-Id", strconv.FormatInt(job.ID, 10))
		_, _ = w.Write(job.Result)
	})
	return mux
}

// newWorker counts primes with a sieve: the CPU-heavy part.
func newWorker(client *queued.Client) *queued.Worker {
	w := queued.NewWorker(client, queued.WorkerConfig{Queues: []string{queueName}, Concurrency: 2})
	w.Handle(jobName, func(ctx context.Context, job *queued.Job) ([]byte, error) {
		var req Request
		if err := job.DecodeJSON(&req); err != nil {
			return nil, queued.Permanent(err)
		}
		composite := make([]bool, req.Below)
		n := 0
		for i := 2; i < req.Below; i++ {
			if composite[i] {
				continue
			}
			n++
			for k := i * i; k < req.Below; k += i {
				composite[k] = true
			}
			if i%1_000_000 == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
		return queued.JSON(Answer{Below: req.Below, Primes: n}), nil
	})
	return w
}
