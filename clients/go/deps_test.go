package queued_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsOnlyTheGeneratedAPI keeps the SDK free of server packages:
// users import it into their services, and it must not drag in pgx or
// the service core.
func TestImportsOnlyTheGeneratedAPI(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const project = "github.com/queued-dev/queued/"
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == project+"clients/go", dep == project+"api/proto/queued/v1":
		case strings.HasPrefix(dep, project):
			t.Errorf("the SDK depends on %s", dep)
		case strings.Contains(dep, "jackc/pgx"):
			t.Errorf("the SDK depends on %s", dep)
		}
	}
}
