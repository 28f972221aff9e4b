package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestHandlerAnswersWithTheWorkersResult(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	client, err := queued.Dial(context.Background(), s.GRPCAddr())
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	t.Cleanup(func() { client.Close() })

	// Without a worker the request times out with 504.
	api := httptest.NewServer(handler(client, 300*time.Millisecond))
	t.Cleanup(api.Close)
	resp, err := http.Get(api.URL + "/primes?below=100")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status without a worker = %d, want 504", resp.StatusCode)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- newWorker(client).Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	slow := httptest.NewServer(handler(client, 10*time.Second))
	t.Cleanup(slow.Close)
	resp, err = http.Get(slow.URL + "/primes?below=1000000")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	var a Answer
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&a) != nil || a.Primes != 78498 {
		t.Fatalf("GET /primes?below=1000000 = %d %+v, want 200 and 78498 primes", resp.StatusCode, a)
	}
	resp2, err := http.Get(slow.URL + "/primes?below=x")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad input status = %d, want 400", resp2.StatusCode)
	}
}
