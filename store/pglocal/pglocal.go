// Package pglocal starts and stops a private PostgreSQL cluster from the
// machine's own server binaries. queued uses it when no database URL is
// given, and tests use it when no server answers, so a newcomer needs nothing
// beyond the PostgreSQL packages.
//
// initdb and postgres refuse to run as root; when the current user is root,
// the cluster is created and run as the "postgres" system user.
package pglocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options say where the cluster lives and how it runs.
type Options struct {
	// DataDir holds the cluster; it is created on first start and reused.
	DataDir string
	// Port to listen on (127.0.0.1 only); 0 picks a free one, or reuses the
	// port the cluster had when it is already running.
	Port int
	// BinDir holds initdb, pg_ctl and postgres; empty means search PATH and
	// then /usr/lib/postgresql/<newest>/bin.
	BinDir string
	// Settings are extra server settings (-c name=value).
	Settings map[string]string
}

// Cluster is a running private PostgreSQL.
type Cluster struct {
	opts   Options
	binDir string
	port   int
	cred   *syscall.Credential
}

// Start creates the cluster if needed and starts it, or attaches to it if
// it is already running.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.DataDir == "" {
		return nil, errors.New("pglocal: DataDir is required")
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, err
	}
	opts.DataDir = dataDir
	binDir, err := findBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, binDir: binDir}
	if os.Geteuid() == 0 {
		cred, err := postgresUser()
		if err != nil {
			return nil, err
		}
		c.cred = cred
	}
	if err := c.initIfNeeded(ctx); err != nil {
		return nil, err
	}
	if port, ok := c.runningPort(ctx); ok {
		c.port = port
		return c, nil
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Port is the TCP port the cluster listens on.
func (c *Cluster) Port() int { return c.port }

// DataDir is the cluster's folder.
func (c *Cluster) DataDir() string { return c.opts.DataDir }

// URL is a connection URL for database db as the postgres superuser.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// Stop shuts the cluster down (fast mode: open transactions roll back).
func (c *Cluster) Stop(ctx context.Context) error {
	return c.pgctl(ctx, "stop", "-D", c.opts.DataDir, "-m", "fast", "-w")
}

// Kill stops the cluster the way a crash would (immediate mode: no
// checkpoint, clients cut off), for tests of what survives.
func (c *Cluster) Kill(ctx context.Context) error {
	return c.pgctl(ctx, "stop", "-D", c.opts.DataDir, "-m", "immediate", "-w")
}

// Restart starts a stopped cluster again on the same port.
func (c *Cluster) Restart(ctx context.Context) error {
	if _, ok := c.runningPort(ctx); ok {
		return nil
	}
	return c.start(ctx)
}

func (c *Cluster) initIfNeeded(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.opts.DataDir, "PG_VERSION")); err == nil {
		return nil
	}
	// When the cluster runs as another user (root starting it as postgres),
	// that user must be able to reach the data directory.
	if err := os.MkdirAll(filepath.Dir(c.opts.DataDir), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(c.opts.DataDir, 0o700); err != nil {
		return err
	}
	if err := c.chown(c.opts.DataDir); err != nil {
		return err
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "initdb"),
		"-D", c.opts.DataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions")
	cmd.Stdout, cmd.Stderr = &out, &out
	c.asOwner(cmd)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", c.opts.DataDir, err, out.String())
	}
	return nil
}

func (c *Cluster) start(ctx context.Context) error {
	if c.port == 0 {
		c.port = c.opts.Port
	}
	if c.port == 0 {
		p, err := freePort()
		if err != nil {
			return err
		}
		c.port = p
	}
	settings := []string{
		"-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + c.opts.DataDir,
	}
	keys := make([]string, 0, len(c.opts.Settings))
	for k := range c.opts.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		settings = append(settings, "-c", k+"="+c.opts.Settings[k])
	}
	logFile := filepath.Join(c.opts.DataDir, "server.log")
	err := c.pgctl(ctx, "start", "-D", c.opts.DataDir, "-w", "-t", "60", "-l", logFile, "-o", strings.Join(settings, " "))
	if err != nil {
		tail, _ := os.ReadFile(logFile)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("%w\nserver log:\n%s", err, tail)
	}
	return nil
}

// runningPort reports the port of a server already running on the data
// directory, from its postmaster.pid.
func (c *Cluster) runningPort(ctx context.Context) (int, bool) {
	if err := c.pgctl(ctx, "status", "-D", c.opts.DataDir); err != nil {
		return 0, false
	}
	pid, err := os.ReadFile(filepath.Join(c.opts.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	lines := strings.Split(string(pid), "\n")
	if len(lines) < 4 {
		return 0, false
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
	return port, err == nil
}

func (c *Cluster) pgctl(ctx context.Context, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "pg_ctl"), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	c.asOwner(cmd)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pg_ctl %s: %w: %s", args[0], err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (c *Cluster) asOwner(cmd *exec.Cmd) {
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
		cmd.Dir = c.opts.DataDir
	}
}

func (c *Cluster) chown(dir string) error {
	if c.cred == nil {
		return nil
	}
	return os.Chown(dir, int(c.cred.Uid), int(c.cred.Gid))
}

// findBinDir locates the server binaries: the given folder, PATH, or the
// newest /usr/lib/postgresql/<version>/bin (where Debian keeps them).
func findBinDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		d := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	sort.Slice(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
	if len(matches) > 0 {
		return filepath.Dir(matches[0]), nil
	}
	return "", errors.New("pglocal: no PostgreSQL server binaries found (install postgresql, or put pg_ctl and initdb on PATH)")
}

func versionOf(pgctl string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(pgctl))))
	return v
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pglocal: running as root needs a 'postgres' system user to own the cluster: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitReady waits until the cluster accepts TCP connections.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.port), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
