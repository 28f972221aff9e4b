package dashboard_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestCrossSiteActionsAreRefused(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t, queuedtest.WithHTTP())
	id := enqueue(t, s, &queuedv1.JobSpec{Queue: "q", Name: "n"})[0]
	base := "http://" + s.HTTPAddr()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(headers map[string]string) int {
		req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/jobs/%d/cancel", base, id), strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// What a form on another site makes a browser send.
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
		{"Origin": "https://evil.example"},
	} {
		if code := post(h); code != http.StatusForbidden {
			t.Errorf("cross-site POST %v = %d, want 403", h, code)
		}
		if st, _ := jobState(t, s, id); st != "available" {
			t.Fatalf("a refused cross-site POST changed the job to %s", st)
		}
	}
	// The dashboard's own form.
	if code := post(map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": base}); code != http.StatusSeeOther {
		t.Fatalf("same-origin POST = %d, want 303", code)
	}
	if st, _ := jobState(t, s, id); st != "cancelled" {
		t.Fatalf("after the same-origin cancel the job is %s", st)
	}

	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy = %q, want scripts from self only and no framing", csp)
	}
	for path, want := range map[string]int{"/jobs/abc": 400, "/jobs/999999": 404, "/nope": 404, "/queues/q?state=bogus": 400, "/healthz": 200, "/metrics": 200} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
