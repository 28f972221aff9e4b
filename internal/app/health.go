package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// watchHealth probes the database every HealthInterval and sets the gRPC
// health status from the outcome, so load balancers and clients stop
// sending work to a replica that cannot reach PostgreSQL, and send it again
// once it can. Transitions are logged. Once Shutdown has begun the health
// server ignores updates, so a drain is never reported as SERVING.
func (a *App) watchHealth(ctx context.Context) {
	defer close(a.healthDone)
	t := time.NewTicker(a.cfg.HealthInterval)
	defer t.Stop()
	serving := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		dbErr := a.ping(ctx)
		if ctx.Err() != nil {
			return
		}
		up := dbErr == nil && !a.draining()
		a.metrics.SetHealth(dbErr == nil, up)
		if up != serving {
			if up {
				a.log.Info("serving again: the database answers")
			} else {
				a.log.Warn("not serving", "database_err", dbErr, "draining", a.draining())
			}
			serving = up
		}
		a.setServing(up)
	}
}

// Ready reports whether the server can serve: not draining, database up.
func (a *App) Ready(ctx context.Context) error {
	if a.draining() {
		return errors.New("draining")
	}
	return a.ping(ctx)
}

// ping is bounded, so a database that hangs (rather than refuses) still
// turns the status within about a second.
func (a *App) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(a.cfg.HealthInterval, time.Second))
	defer cancel()
	if err := a.pool.Ping(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	return nil
}

func (a *App) draining() bool {
	select {
	case <-a.svc.Draining():
		return true
	default:
		return false
	}
}

func (a *App) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_SERVING
	if !ok {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	a.health.SetServingStatus("", st)
	a.health.SetServingStatus("queued.v1.QueueService", st)
}
