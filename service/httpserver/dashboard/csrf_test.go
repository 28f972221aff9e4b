package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
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
	post := func(path, form string, headers map[string]string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	jobIs := func(want string) func() string {
		return func() string {
			if st, _ := jobState(t, s, id); st != want {
				return "job " + st
			}
			return ""
		}
	}
	queueIs := func(paused bool, rateMax int) func() string {
		return func() string {
			var gotPaused bool
			var gotMax int
			if err := s.Pool().QueryRow(context.Background(),
				`SELECT coalesce(bool_or(paused), false), coalesce(max(rate_max), 0) FROM queued_queues WHERE queue = 'q'`).Scan(&gotPaused, &gotMax); err != nil {
				t.Fatalf("read queue settings: %v", err)
			}
			if gotPaused != paused || gotMax != rateMax {
				return fmt.Sprintf("queue paused=%v rate_max=%d", gotPaused, gotMax)
			}
			return ""
		}
	}
	sameOrigin := map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": base}
	// Each action in turn: what a form on another site makes a browser
	// send is refused and changes nothing; the dashboard's own form works.
	for _, a := range []struct {
		path, form    string
		before, after func() string
	}{
		{fmt.Sprintf("/jobs/%d/cancel", id), "", jobIs("available"), jobIs("cancelled")},
		{"/queues/q/pause", "", queueIs(false, 0), queueIs(true, 0)},
		{"/queues/q/resume", "", queueIs(true, 0), queueIs(false, 0)},
		{"/queues/q/limit", "max=5&per=1s", queueIs(false, 0), queueIs(false, 5)},
		{"/queues/q/limit", "max=0", queueIs(false, 5), queueIs(false, 0)},
	} {
		for _, h := range []map[string]string{
			{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
			{"Origin": "https://evil.example"},
		} {
			if code, _ := post(a.path, a.form, h); code != http.StatusForbidden {
				t.Errorf("cross-site POST %s %v = %d, want 403", a.path, h, code)
			}
			if bad := a.before(); bad != "" {
				t.Fatalf("a refused cross-site POST %s changed the state: %s", a.path, bad)
			}
		}
		if code, _ := post(a.path, a.form, sameOrigin); code != http.StatusSeeOther {
			t.Fatalf("same-origin POST %s = %d, want 303", a.path, code)
		}
		if bad := a.after(); bad != "" {
			t.Fatalf("after the same-origin POST %s: %s", a.path, bad)
		}
	}
	// A limit the service refuses is a 400 page naming the field.
	for form, want := range map[string]string{"max=-1&per=1s": "invalid max", "max=5&per=25h": "invalid per", "max=x": "invalid max"} {
		code, body := post("/queues/q/limit", form, sameOrigin)
		if code != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("POST limit %s = %d, want 400 with %q in the page", form, code, want)
		}
	}

	// A paused queue holding no jobs still has its row in the overview.
	if code, _ := post("/queues/idle/pause", "", sameOrigin); code != http.StatusSeeOther {
		t.Fatalf("pause idle = %d, want 303", code)
	}
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	overview, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if row := regexp.MustCompile(`(?s)<tr data-queue="idle">.*?</tr>`).Find(overview); !strings.Contains(string(row), `class="pill paused"`) {
		t.Errorf("overview row of the empty paused queue = %q, want one with a paused badge", row)
	}
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
