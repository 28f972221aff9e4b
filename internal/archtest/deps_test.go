// Package archtest keeps the dependency direction of DESIGN.md true.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/queued-dev/queued"

// TestDependencyDirection checks the non-test imports of the layers: the
// domain core imports no project package and neither gRPC nor pgx; the
// gRPC adapter never reaches the store; clients import only the API.
func TestDependencyDirection(t *testing.T) {
	t.Parallel()
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{module + "/service", []string{module + "/", "google.golang.org/grpc", "github.com/jackc/pgx"}},
		{module + "/service/grpcserver", []string{module + "/store", "github.com/jackc/pgx"}},
		{module + "/store", []string{module + "/service/grpcserver", "google.golang.org/grpc"}},
		{module + "/clients/...", []string{module + "/service", module + "/store", module + "/internal", "github.com/jackc/pgx"}},
	}
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", r.pkg).CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "matched no packages") {
				continue // the layer does not exist yet
			}
			t.Fatalf("go list %s: %v\n%s", r.pkg, err, out)
		}
		self := strings.TrimSuffix(r.pkg, "/...")
		for _, dep := range strings.Fields(string(out)) {
			if dep == self || strings.HasPrefix(dep, self+"/") && strings.HasSuffix(r.pkg, "/...") {
				continue
			}
			for _, f := range r.forbidden {
				if dep == strings.TrimSuffix(f, "/") || strings.HasPrefix(dep, f) {
					if f == module+"/" && strings.HasPrefix(dep, self+"/") {
						continue
					}
					if strings.HasPrefix(dep, module+"/api/") && r.pkg != module+"/service" {
						continue
					}
					t.Errorf("%s depends on %s; DESIGN.md forbids %s there", r.pkg, dep, f)
				}
			}
		}
	}
}
