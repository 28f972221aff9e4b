package dashboard_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// chromiumPath is Debian's chromium package; CI installs it.
const chromiumPath = "/usr/bin/chromium"

// browser starts a headless Chromium with a fresh profile and returns a
// tab's context. Dialogs (the confirmations of cancel and delete) are
// accepted, as an operator would.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser test needs Chromium at %s (Debian: apt-get install chromium): %v", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	// Subscribing starts the browser and opens the tab.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return ctx
}

// run runs browser steps and fails the test on the first error.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one browser action that produces a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return get(t, ctx, "read "+sel, chromedp.Text(chromedp.CSS(sel)))
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	return get(t, ctx, "evaluate "+js, chromedp.Evaluate[T](js))
}

// screenshot saves the page when QUEUED_SCREENSHOT_DIR names a directory,
// for a person to look at; tests never compare images.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("QUEUED_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatalf("write screenshot: %v", err)
	}
}

// failNext leases the next job of queue on a raw stream and nacks it as
// non-retryable, as a worker giving up would.
func failNext(t *testing.T, s *queuedtest.Server, queue, msg string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := s.Client.Lease(ctx)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	if err := stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{Queues: []string{queue}, Window: 1}}}); err != nil {
		t.Fatalf("open lease stream: %v", err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("wait for a job: %v", err)
		}
		if j := m.GetJob(); j != nil {
			// Close the window first, on the same stream, so the freed slot
			// leases none of the jobs the test enqueues next.
			if err := stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_SetWindow{SetWindow: &queuedv1.SetWindow{Window: 0}}}); err != nil {
				t.Fatalf("set window: %v", err)
			}
			if err := stream.Send(&queuedv1.LeaseRequest{Ref: 1, Msg: &queuedv1.LeaseRequest_Nack{Nack: &queuedv1.NackRequest{
				JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken(), Error: msg, NonRetryable: true}}}); err != nil {
				t.Fatalf("nack: %v", err)
			}
			for {
				m, err := stream.Recv()
				if err != nil {
					t.Fatalf("wait for the nack's reply: %v", err)
				}
				if r := m.GetReply(); r != nil {
					if r.GetCode() != 0 {
						t.Fatalf("nack refused: %v", r)
					}
					return j.GetJob().GetId()
				}
			}
		}
	}
}

func jobState(t *testing.T, s *queuedtest.Server, id int64) (state string, attempt int) {
	t.Helper()
	if err := s.Pool().QueryRow(context.Background(), `SELECT state, attempt FROM queued_jobs WHERE id = $1`, id).Scan(&state, &attempt); err != nil {
		t.Fatalf("read job %d: %v", id, err)
	}
	return state, attempt
}

func enqueue(t *testing.T, s *queuedtest.Server, specs ...*queuedv1.JobSpec) []int64 {
	t.Helper()
	resp, err := s.Client.Enqueue(context.Background(), &queuedv1.EnqueueRequest{Jobs: specs})
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	var ids []int64
	for _, j := range resp.GetJobs() {
		ids = append(ids, j.GetId())
	}
	return ids
}

func TestDashboardInABrowser(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t, queuedtest.WithHTTP())
	base := "http://" + s.HTTPAddr()

	failing := enqueue(t, s, &queuedv1.JobSpec{Queue: "images", Name: "resize", Payload: []byte(`{"image":"cat.png","width":640}`), MaxAttempts: 3,
		Metadata: map[string]string{"trace": "abc123"}})[0]
	if got := failNext(t, s, "images", "decoder exploded: unsupported format"); got != failing {
		t.Fatalf("failed job %d, want %d", got, failing)
	}
	const evilName = `<img src=x onerror="window.pwned=1">resize`
	ids := enqueue(t, s,
		&queuedv1.JobSpec{Queue: "images", Name: evilName, Payload: []byte(`</pre><script>window.pwned=2</script>`)},
		&queuedv1.JobSpec{Queue: "images", Name: "thumbnail", Payload: []byte("plain text payload")},
		&queuedv1.JobSpec{Queue: "emails", Name: "send_welcome_email", Payload: []byte(`{"user":42}`)},
	)
	evil, toCancel := ids[0], ids[1]
	eventuallyState(t, s, failing, "failed")

	ctx := browser(t)
	css := func(format string, args ...any) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(format, args...)) }

	// Overview: the queues with their counts; click through to a queue.
	run(t, ctx, "open the overview",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(css(`a.queue-link[href="/queues/images"]`)),
	)
	if got := text(t, ctx, `a.count.state-failed[href="/queues/images?state=failed"]`); got != "1" {
		t.Errorf("overview shows %q failed jobs in images, want 1", got)
	}
	screenshot(t, ctx, "overview")
	run(t, ctx, "click the queue",
		chromedp.Click(css(`a.queue-link[href="/queues/images"]`)),
		chromedp.WaitVisible(css(`nav.tabs`)),
	)

	// The queue's failed tab lists the failed job; click it.
	run(t, ctx, "open the failed tab",
		chromedp.Click(css(`nav.tabs a.state-failed`)),
		chromedp.WaitVisible(css(`a.job-link[href="/jobs/%d"]`, failing)),
	)
	if rows := eval[int](t, ctx, `document.querySelectorAll("table.jobs tbody tr").length`); rows != 1 {
		t.Errorf("failed tab lists %d jobs, want 1", rows)
	}
	screenshot(t, ctx, "queue-failed")
	run(t, ctx, "open the failed job",
		chromedp.Click(css(`a.job-link[href="/jobs/%d"]`, failing)),
		chromedp.WaitVisible(css(`#retry`)),
	)
	stateText, errorsText, payloadText := text(t, ctx, `#job-state`), text(t, ctx, `ol.errors`), text(t, ctx, `pre.bytes[data-kind="json"]`)
	if stateText != "failed" || !strings.Contains(errorsText, "decoder exploded") || !strings.Contains(payloadText, `"width": 640`) {
		t.Errorf("job page shows state %q, errors %q, payload %q; want failed, the error, the indented JSON", stateText, errorsText, payloadText)
	}
	screenshot(t, ctx, "job-failed")

	// Retry: the page and the database both say available, attempts reset.
	run(t, ctx, "retry",
		chromedp.Click(css(`#retry`)),
		chromedp.WaitVisible(css(`p.flash`)),
	)
	if st, flash := text(t, ctx, `#job-state`), text(t, ctx, `p.flash`); st != "available" || !strings.Contains(flash, "retried") {
		t.Errorf("after retry the page shows state %q and %q, want available and a retried notice", st, flash)
	}
	if st, attempt := jobState(t, s, failing); st != "available" || attempt != 0 {
		t.Errorf("after retry the job is %s at attempt %d, want available at 0", st, attempt)
	}
	screenshot(t, ctx, "job-retried")

	// Cancel (the confirmation is accepted).
	run(t, ctx, "cancel",
		chromedp.Navigate(fmt.Sprintf("%s/jobs/%d", base, toCancel)),
		chromedp.WaitVisible(css(`#cancel`)),
		chromedp.Click(css(`#cancel`)),
		chromedp.WaitVisible(css(`p.flash`)),
	)
	if st := text(t, ctx, `#job-state`); st != "cancelled" {
		t.Errorf("after cancel the page shows %q, want cancelled", st)
	}
	if st, _ := jobState(t, s, toCancel); st != "cancelled" {
		t.Errorf("after cancel the job is %s, want cancelled", st)
	}

	// A name and payload full of markup are shown as text, never run.
	run(t, ctx, "open the job with markup in its name",
		chromedp.Navigate(fmt.Sprintf("%s/jobs/%d", base, evil)),
		chromedp.WaitVisible(css(`p.job-name`)),
	)
	nameText, evilPayload := text(t, ctx, `p.job-name`), text(t, ctx, `pre.bytes`)
	imgs := eval[int](t, ctx, `document.querySelectorAll("main img, main script").length`)
	pwned := eval[bool](t, ctx, `window.pwned !== undefined`)
	if nameText != evilName || imgs != 0 || pwned || !strings.Contains(evilPayload, "<script>") {
		t.Errorf("markup job: name %q, payload %q, %d img/script elements, script ran: %v; want the name and payload as text and nothing run", nameText, evilPayload, imgs, pwned)
	}
	run(t, ctx, "the queue page escapes the name too",
		chromedp.Navigate(base+"/queues/images?state=available"),
		chromedp.WaitVisible(css(`table.jobs`)),
	)
	if imgs, pwned := eval[int](t, ctx, `document.querySelectorAll("main img").length`), eval[bool](t, ctx, `window.pwned !== undefined`); imgs != 0 || pwned {
		t.Errorf("queue page: %d img elements, script ran: %v; want none", imgs, pwned)
	}
	names := eval[[]string](t, ctx, `[...document.querySelectorAll("td.name")].map(e => e.textContent)`)
	if !slices.Contains(names, evilName) {
		t.Errorf("queue page names = %q, want %q among them as text", names, evilName)
	}
	screenshot(t, ctx, "queue-available")
}

func eventuallyState(t *testing.T, s *queuedtest.Server, id int64, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := jobState(t, s, id)
		if st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d is %s, want %s", id, st, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
