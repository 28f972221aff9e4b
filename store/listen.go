package store

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/queued-dev/queued/service"
)

// Listen holds one connection that LISTENs on queued's channels and hands
// each notification to onNotify. When the connection drops it reconnects
// with backoff and calls onReconnect, because notifications sent while it
// was away are lost and dispatchers must look for themselves.
func (s *Store) Listen(ctx context.Context, onNotify func(service.Notification), onReconnect func()) error {
	backoff := 50 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		conn, err := s.listenConn(ctx)
		if err == nil {
			if !first {
				onReconnect()
			}
			first = false
			backoff = 50 * time.Millisecond
			err = s.receive(ctx, conn, onNotify)
			conn.Close(context.WithoutCancel(ctx))
		}
		if ctx.Err() != nil {
			break
		}
		first = false
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	return ctx.Err()
}

func (s *Store) listenConn(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+channelAvailable+`; LISTEN `+channelCancelled+`; LISTEN `+channelChanges+`; LISTEN `+channelSchedules); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

func (s *Store) receive(ctx context.Context, conn *pgx.Conn, onNotify func(service.Notification)) error {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch n.Channel {
		case channelAvailable:
			onNotify(service.Notification{Kind: service.NotifyAvailable, Queue: n.Payload})
		case channelChanges:
			onNotify(service.Notification{Kind: service.NotifyChanged})
		case channelSchedules:
			onNotify(service.Notification{Kind: service.NotifySchedules})
		case channelCancelled:
			// Payload: "<job id>:<kind>:<reason>"; see kindCancelled.
			idText, rest, _ := strings.Cut(n.Payload, ":")
			kind, reason, _ := strings.Cut(rest, ":")
			if id, err := strconv.ParseInt(idText, 10, 64); err == nil {
				onNotify(service.Notification{Kind: service.NotifyCancelled, JobID: id, Reason: reason, LeaseExpired: kind == kindLeaseExpired})
			}
		}
	}
}
