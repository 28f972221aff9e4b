package queued

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// DefaultAddr is where Dial connects when given an empty address.
const DefaultAddr = "127.0.0.1:7070"

// Client produces and inspects jobs. It is safe for concurrent use; create
// one per process and share it, also with Workers.
type Client struct {
	conn   *grpc.ClientConn // nil when built by NewClient
	api    queuedv1.QueueServiceClient
	watch  queuedv1.WatchServiceClient
	sched  queuedv1.ScheduleServiceClient
	flows  queuedv1.FlowServiceClient
	admin  queuedv1.AdminServiceClient
	queues queuedv1.QueueAdminServiceClient
	closer func() error
}

// DialOption configures Dial.
type DialOption func(*dialConfig)

type dialConfig struct {
	grpcOpts []grpc.DialOption
}

// WithGRPCOptions adds gRPC dial options, e.g. transport credentials. Without
// them Dial uses a plaintext connection.
func WithGRPCOptions(opts ...grpc.DialOption) DialOption {
	return func(c *dialConfig) { c.grpcOpts = append(c.grpcOpts, opts...) }
}

// Dial creates a client for the server at addr ("" means DefaultAddr). The
// connection is made lazily and re-made by gRPC when it breaks, so Dial
// succeeds while the server is still starting; calls then fail with
// UNAVAILABLE until it is up. ctx is only checked, not kept.
func Dial(ctx context.Context, addr string, opts ...DialOption) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if addr == "" {
		addr = DefaultAddr
	}
	var cfg dialConfig
	for _, o := range opts {
		o(&cfg)
	}
	grpcOpts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Find a dead server or network on an otherwise idle stream. The
		// server accepts pings every 5s or slower.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 10 * time.Second}),
	}, cfg.grpcOpts...)
	conn, err := grpc.NewClient(addr, grpcOpts...)
	if err != nil {
		return nil, fmt.Errorf("dial queued at %s: %w", addr, err)
	}
	return &Client{conn: conn, api: queuedv1.NewQueueServiceClient(conn), watch: queuedv1.NewWatchServiceClient(conn), sched: queuedv1.NewScheduleServiceClient(conn), flows: queuedv1.NewFlowServiceClient(conn), admin: queuedv1.NewAdminServiceClient(conn), queues: queuedv1.NewQueueAdminServiceClient(conn), closer: conn.Close}, nil
}

// NewClient wraps an existing gRPC connection, for programs that manage
// their own (interceptors, load balancing). Close does not close cc.
func NewClient(cc grpc.ClientConnInterface) *Client {
	return &Client{api: queuedv1.NewQueueServiceClient(cc), watch: queuedv1.NewWatchServiceClient(cc), sched: queuedv1.NewScheduleServiceClient(cc), flows: queuedv1.NewFlowServiceClient(cc), admin: queuedv1.NewAdminServiceClient(cc), queues: queuedv1.NewQueueAdminServiceClient(cc), closer: func() error { return nil }}
}

// Close closes the connection Dial made. Workers using the client must have
// returned from Run first.
func (c *Client) Close() error { return c.closer() }

// API is the generated gRPC client, for calls this package does not wrap.
func (c *Client) API() queuedv1.QueueServiceClient { return c.api }

// Enqueued is the outcome of enqueueing one job.
type Enqueued struct {
	ID int64 `json:"id"`
	// Duplicate is true when an unfinished job with the same unique key
	// existed; ID is that job's and nothing was inserted.
	Duplicate bool  `json:"duplicate"`
	State     State `json:"state"`
}

// Enqueue adds one job to queue. The payload is opaque bytes; see
// EnqueueJSON for typed payloads.
func (c *Client) Enqueue(ctx context.Context, queue, name string, payload []byte, opts ...EnqueueOption) (Enqueued, error) {
	out, err := c.EnqueueMany(ctx, NewSpec(queue, name, payload, opts...))
	if err != nil {
		return Enqueued{}, err
	}
	return out[0], nil
}

// EnqueueJSON adds one job whose payload is v encoded as JSON; a handler
// reads it back with Job.DecodeJSON or HandleJSON.
func (c *Client) EnqueueJSON(ctx context.Context, queue, name string, v any, opts ...EnqueueOption) (Enqueued, error) {
	spec, err := NewJSONSpec(queue, name, v, opts...)
	if err != nil {
		return Enqueued{}, err
	}
	out, err := c.EnqueueMany(ctx, spec)
	if err != nil {
		return Enqueued{}, err
	}
	return out[0], nil
}

// EnqueueMany adds jobs all or nothing, in one round trip. The result has
// one entry per spec, in order.
func (c *Client) EnqueueMany(ctx context.Context, specs ...JobSpec) ([]Enqueued, error) {
	req := &queuedv1.EnqueueRequest{Jobs: make([]*queuedv1.JobSpec, len(specs))}
	for i, s := range specs {
		req.Jobs[i] = s.toProto()
	}
	resp, err := c.api.Enqueue(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("enqueue %d jobs: %w", len(specs), err)
	}
	if len(resp.GetJobs()) != len(specs) {
		return nil, fmt.Errorf("enqueue %d jobs: server answered for %d", len(specs), len(resp.GetJobs()))
	}
	out := make([]Enqueued, len(specs))
	for i, j := range resp.GetJobs() {
		out[i] = Enqueued{ID: j.GetId(), Duplicate: j.GetDuplicate(), State: toState(j.GetState())}
	}
	return out, nil
}

// GetJob returns a job with its state, result and errors. A job that does
// not exist (or was removed after its retention) is a NOT_FOUND status;
// IsNotFound tells.
func (c *Client) GetJob(ctx context.Context, id int64) (*Job, error) {
	resp, err := c.api.GetJob(ctx, &queuedv1.GetJobRequest{Id: id})
	if err != nil {
		return nil, fmt.Errorf("get job %d: %w", id, err)
	}
	return jobFromProto(resp.GetJob()), nil
}

// CancelJob cancels an unfinished job and returns it as it now is. A
// worker running it has its handler's context cancelled.
func (c *Client) CancelJob(ctx context.Context, id int64, reason string) (*Job, error) {
	resp, err := c.api.CancelJob(ctx, &queuedv1.CancelJobRequest{Id: id, Reason: reason})
	if err != nil {
		return nil, fmt.Errorf("cancel job %d: %w", id, err)
	}
	return jobFromProto(resp.GetJob()), nil
}

// JSON encodes v for use as a payload or result, panicking on values JSON
// cannot encode (channels, funcs): those are programming errors.
func JSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("queued.JSON: %v", err))
	}
	return b
}
