// Package nodetest runs the TypeScript SDK's tests (clients/node) against a
// real server, so `go test ./...` (and `make test`) covers the Node client.
package nodetest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/queued-dev/queued/internal/queuedtest"
)

// TestNodeClient installs the SDK's dependencies when node_modules is
// missing or older than package-lock.json, then runs `npm test` (compile,
// then node --test) with QUEUED_ADDR naming a fresh server. It does not
// skip without Node.js: a machine that runs the tests must have it.
func TestNodeClient(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install Node.js 18 or newer with npm (on Debian: apt-get install nodejs npm) to run the TypeScript SDK's tests", tool)
		}
	}
	if out, err := exec.Command("node", "--version").Output(); err != nil {
		t.Fatalf("node --version: %v", err)
	} else if major := nodeMajor(string(out)); major < 18 {
		t.Fatalf("node %s is too old: the TypeScript SDK needs Node.js 18 or newer (Debian 12's nodejs package)", strings.TrimSpace(string(out)))
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "clients", "node"))
	if err != nil {
		t.Fatal(err)
	}
	srv := queuedtest.Start(t)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if stale, why := nodeModulesStale(dir); stale {
		t.Logf("running npm ci: %s", why)
		run(ctx, t, dir, nil, "npm", "ci", "--no-audit", "--no-fund")
	}
	out := run(ctx, t, dir, []string{"QUEUED_ADDR=" + srv.GRPCAddr()}, "npm", "test")
	t.Logf("npm test:\n%s", out)
}

// nodeModulesStale reports whether npm ci must run: npm records what it
// installed in node_modules/.package-lock.json, which is older than
// package-lock.json after the lock file changed.
func nodeModulesStale(dir string) (bool, string) {
	installed, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil {
		return true, "node_modules is missing"
	}
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return true, "package-lock.json is missing"
	}
	if lock.ModTime().After(installed.ModTime()) {
		return true, "package-lock.json is newer than node_modules"
	}
	return false, ""
}

// nodeMajor reads the major version from `node --version` output ("v20.11.1").
func nodeMajor(version string) int {
	v := strings.TrimPrefix(strings.TrimSpace(version), "v")
	major, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0
	}
	return n
}

func run(ctx context.Context, t *testing.T, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v in clients/node: %v\n%s", name, args, err, out.Bytes())
	}
	return out.Bytes()
}
