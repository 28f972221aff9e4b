// Package storetest gives each test its own migrated PostgreSQL database.
//
// It finds a server (QUEUED_TEST_DATABASE_URL, else 127.0.0.1:5432, else a
// private cluster started with pglocal and reused across test runs), migrates
// a template database once per migration hash, and clones it per test with
// CREATE DATABASE ... TEMPLATE, which takes milliseconds. Tests therefore run
// in parallel without seeing each other's rows.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/queued-dev/queued/migrations"
	"github.com/queued-dev/queued/store/pglocal"
)

var (
	serverOnce sync.Once
	serverURL  string
	serverErr  error
	cluster    *pglocal.Cluster
)

// ServerURL returns the URL of the server tests use (database "postgres").
func ServerURL(t testing.TB) string {
	t.Helper()
	serverOnce.Do(func() { serverURL, serverErr = findServer() })
	if serverErr != nil {
		t.Fatalf("no PostgreSQL for tests: %v", serverErr)
	}
	return serverURL
}

// PrivateCluster returns the pglocal cluster tests run on, starting one if
// needed, even when another server is available. Tests that stop and start
// PostgreSQL use it, so they never touch a shared server.
func PrivateCluster(t testing.TB, name string) *pglocal.Cluster {
	t.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("queued-test-pg-%d-%s", os.Getuid(), name))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pglocal.Start(ctx, pglocal.Options{DataDir: dir, Settings: fastSettings})
	if err != nil {
		t.Fatalf("start private PostgreSQL: %v", err)
	}
	return c
}

// fastSettings trade durability for speed; fine for throwaway test data.
var fastSettings = map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "300"}

func findServer() (string, error) {
	if u := os.Getenv("QUEUED_TEST_DATABASE_URL"); u != "" {
		return u, ping(u)
	}
	local := "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	if err := ping(local); err == nil {
		return local, nil
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("queued-test-pg-%d", os.Getuid()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pglocal.Start(ctx, pglocal.Options{DataDir: dir, Settings: fastSettings})
	if err != nil {
		return "", err
	}
	cluster = c
	return c.URL("postgres"), nil
}

func ping(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// NewDatabase creates a fresh migrated database on the test server, drops
// it when the test ends, and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return NewDatabaseOn(t, ServerURL(t))
}

// NewDatabaseOn is NewDatabase on a given server.
func NewDatabaseOn(t testing.TB, server string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tpl, err := ensureTemplate(ctx, server)
	if err != nil {
		t.Fatalf("prepare template database: %v", err)
	}
	name := "queued_test_" + randomHex(6)
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("connect to test server: %v", err)
	}
	defer admin.Close(ctx)
	// CREATE DATABASE from a template fails if someone else is copying the
	// same template at that instant; retry briefly.
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, tpl))
		if err == nil || attempt > 50 {
			break
		}
		time.Sleep(time.Duration(20+attempt*10) * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name))
	})
	return withDatabase(server, name)
}

// NewPool is NewDatabase plus a pool closed at the end of the test.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), NewDatabase(t))
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

var (
	templateMu    sync.Mutex
	templateReady = map[string]string{}
)

// ensureTemplate creates and migrates the template for the current
// migration hash once, across test processes (an advisory lock serializes
// packages running in parallel).
func ensureTemplate(ctx context.Context, server string) (string, error) {
	templateMu.Lock()
	defer templateMu.Unlock()
	if name, ok := templateReady[server]; ok {
		return name, nil
	}
	hash, err := migrations.Hash()
	if err != nil {
		return "", err
	}
	name := "queued_tpl_" + hash
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		return "", err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock(7170)`); err != nil {
		return "", err
	}
	defer admin.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(7170)`)
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		_, _ = admin.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name))
		if _, err := admin.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s`, name)); err != nil {
			return "", err
		}
		pool, err := pgxpool.New(ctx, withDatabase(server, name))
		if err != nil {
			return "", err
		}
		err = migrations.Apply(ctx, pool)
		pool.Close()
		if err != nil {
			return "", fmt.Errorf("migrate template: %w", err)
		}
		if _, err := admin.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s WITH is_template true ALLOW_CONNECTIONS false`, name)); err != nil {
			return "", err
		}
	}
	templateReady[server] = name
	return name, nil
}

func withDatabase(server, db string) string {
	u, err := url.Parse(server)
	if err != nil {
		return server
	}
	u.Path = "/" + db
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
