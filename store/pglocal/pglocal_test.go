package pglocal_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/queued-dev/queued/store/pglocal"
)

// TestStartStopRestartKeepsData creates a private cluster from the machine's
// binaries (as the postgres user when run as root), writes a row, restarts
// it, and finds the row again: what `make run` relies on between runs.
func TestStartStopRestartKeepsData(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base, err := os.MkdirTemp("", "pglocal-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	t.Cleanup(func() { os.RemoveAll(base) })
	opts := pglocal.Options{DataDir: filepath.Join(base, "pg"), Settings: map[string]string{"fsync": "off"}}

	c, err := pglocal.Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	exec := func(sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)`)

	// A second Start on a running cluster attaches to it.
	again, err := pglocal.Start(ctx, opts)
	if err != nil || again.Port() != c.Port() {
		t.Fatalf("Start() on a running cluster = port %d, %v; want port %d", again.Port(), err, c.Port())
	}

	if err := c.Kill(ctx); err != nil {
		t.Fatalf("Kill() = %v", err)
	}
	if _, err := pgx.Connect(ctx, c.URL("postgres")); err == nil {
		t.Fatal("connected to a killed cluster")
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatalf("Restart() = %v", err)
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("connect after restart: %v", err)
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("row after restart = %d, %v; want 42", v, err)
	}
}
