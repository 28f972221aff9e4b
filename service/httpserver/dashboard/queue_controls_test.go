package dashboard_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// worker opens a raw lease stream on queues and passes on the ids of the
// jobs it is handed (it never settles them). It returns once the server
// confirmed the open, so jobs enqueued afterwards are announced to it.
func worker(t *testing.T, s *queuedtest.Server, queues ...string) <-chan int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := s.Client.Lease(ctx)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	if err := stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{Queues: queues, Window: 10}}}); err != nil {
		t.Fatalf("open lease stream: %v", err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("wait for the stream to open: %v", err)
		}
		if m.GetOpened() != nil {
			break
		}
	}
	jobs := make(chan int64, 100)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if j := m.GetJob(); j != nil {
				jobs <- j.GetJob().GetId()
			}
		}
	}()
	return jobs
}

// receive waits up to 10 s for the job want on jobs, failing on any other.
func receive(t *testing.T, jobs <-chan int64, want int64, what string) {
	t.Helper()
	select {
	case got := <-jobs:
		if got != want {
			t.Fatalf("%s: the worker got job %d, want %d", what, got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the worker got no job in 10 s, want job %d", what, want)
	}
}

type queueRow struct {
	Paused         bool
	RateMax, PerMS int
}

func queueSettingsRow(t *testing.T, s *queuedtest.Server, queue string) queueRow {
	t.Helper()
	var r queueRow
	if err := s.Pool().QueryRow(context.Background(),
		`SELECT paused, rate_max, rate_per_ms FROM queued_queues WHERE queue = $1`, queue).Scan(&r.Paused, &r.RateMax, &r.PerMS); err != nil {
		t.Fatalf("read queued_queues row of %q: %v", queue, err)
	}
	return r
}

func TestQueueControlsInABrowser(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t, queuedtest.WithHTTP())
	base := "http://" + s.HTTPAddr()
	const queue = "mail"
	first := enqueue(t, s, &queuedv1.JobSpec{Queue: queue, Name: "send"})[0]

	ctx := browser(t)
	run(t, ctx, "open the queue page",
		chromedp.Navigate(base+"/queues/"+queue),
		chromedp.WaitVisible(chromedp.CSS(`#pause`)),
	)
	if st, limit := text(t, ctx, `#queue-status`), text(t, ctx, `#rate-limit`); st != "running" || limit != "none" {
		t.Errorf("a fresh queue shows status %q and limit %q, want running and none", st, limit)
	}

	// Pause (the confirmation is accepted): the page, the overview and the
	// row all say paused.
	run(t, ctx, "pause",
		chromedp.Click(chromedp.CSS(`#pause`)),
		chromedp.WaitVisible(chromedp.CSS(`#resume`)),
	)
	if st, flash := text(t, ctx, `#queue-status`), text(t, ctx, `p.flash`); st != "paused" || !strings.Contains(flash, "paused") {
		t.Errorf("after pause the page shows status %q and %q, want paused and a paused notice", st, flash)
	}
	if row := queueSettingsRow(t, s, queue); !row.Paused {
		t.Errorf("after pause queued_queues.paused = false, want true")
	}
	screenshot(t, ctx, "queue-paused")
	run(t, ctx, "open the overview",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`a.queue-link[href="/queues/mail"]`)),
	)
	if badge := eval[string](t, ctx, `(document.querySelector('tr[data-queue="mail"] .pill.paused') || {}).textContent || ""`); badge != "paused" {
		t.Errorf("overview badge of mail = %q, want paused", badge)
	}

	// A worker on the paused queue and another one gets the other queue's
	// job (so it is served) and none of the paused queue's, old or new.
	jobs := worker(t, s, queue, "other")
	second := enqueue(t, s, &queuedv1.JobSpec{Queue: queue, Name: "send"})[0]
	other := enqueue(t, s, &queuedv1.JobSpec{Queue: "other", Name: "x"})[0]
	receive(t, jobs, other, "while mail is paused")
	select {
	case id := <-jobs:
		t.Fatalf("while mail is paused the worker got job %d", id)
	case <-time.After(1500 * time.Millisecond):
	}
	for _, id := range []int64{first, second} {
		if st, _ := jobState(t, s, id); st != "available" {
			t.Errorf("while paused job %d is %s, want available", id, st)
		}
	}

	// Resume: both jobs reach the worker.
	run(t, ctx, "resume",
		chromedp.Navigate(base+"/queues/"+queue),
		chromedp.WaitVisible(chromedp.CSS(`#resume`)),
		chromedp.Click(chromedp.CSS(`#resume`)),
		chromedp.WaitVisible(chromedp.CSS(`#pause`)),
	)
	if st := text(t, ctx, `#queue-status`); st != "running" {
		t.Errorf("after resume the page shows status %q, want running", st)
	}
	if row := queueSettingsRow(t, s, queue); row.Paused {
		t.Errorf("after resume queued_queues.paused = true, want false")
	}
	got := map[int64]bool{}
	for len(got) < 2 {
		select {
		case id := <-jobs:
			got[id] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("after resume the worker got jobs %v in 10 s, want %d and %d", got, first, second)
		}
	}
	if !got[first] || !got[second] {
		t.Errorf("after resume the worker got jobs %v, want %d and %d", got, first, second)
	}

	// Bad input shows the field and reason on the page, not an error page.
	for _, c := range []struct{ max, per, want string }{
		{"lots", "1s", "invalid max"},
		{"2000000", "1s", "invalid max: must be at most 1000000"},
		{"20", "soon", "invalid per"},
		{"20", "1500us", "invalid per: must be a whole number of milliseconds"},
	} {
		run(t, ctx, "submit a bad limit",
			chromedp.Navigate(base+"/queues/"+queue),
			chromedp.WaitVisible(chromedp.CSS(`#limit-max`)),
			chromedp.SetValue(chromedp.CSS(`#limit-max`), c.max),
			chromedp.SetValue(chromedp.CSS(`#limit-per`), c.per),
			chromedp.Click(chromedp.CSS(`#set-limit`)),
			chromedp.WaitVisible(chromedp.CSS(`p.problem`)),
		)
		if problem, max := text(t, ctx, `p.problem`), eval[string](t, ctx, `document.getElementById("limit-max").value`); !strings.Contains(problem, c.want) || max != c.max {
			t.Errorf("limit %s/%s: page says %q with max %q in the form, want %q and the typed value", c.max, c.per, problem, max, c.want)
		}
		if row := queueSettingsRow(t, s, queue); row.RateMax != 0 {
			t.Fatalf("a refused limit %s/%s set rate_max = %d", c.max, c.per, row.RateMax)
		}
	}

	// Set a limit: shown on the page and the overview, stored in the row.
	run(t, ctx, "set a limit",
		chromedp.SetValue(chromedp.CSS(`#limit-max`), "20"),
		chromedp.SetValue(chromedp.CSS(`#limit-per`), "500ms"),
		chromedp.Click(chromedp.CSS(`#set-limit`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
	)
	if limit := text(t, ctx, `#rate-limit`); limit != "20 / 500ms" {
		t.Errorf("after setting 20 per 500ms the page shows %q", limit)
	}
	if row := queueSettingsRow(t, s, queue); row.RateMax != 20 || row.PerMS != 500 {
		t.Errorf("after setting 20 per 500ms the row holds %d per %d ms", row.RateMax, row.PerMS)
	}
	screenshot(t, ctx, "queue-limited")
	run(t, ctx, "open the overview",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-queue="mail"] td.rate-limit`)),
	)
	if limit := text(t, ctx, `tr[data-queue="mail"] td.rate-limit`); limit != "20 / 500ms" {
		t.Errorf("overview shows mail's limit as %q, want 20 / 500ms", limit)
	}
	screenshot(t, ctx, "overview-controls")

	// Remove it.
	run(t, ctx, "remove the limit",
		chromedp.Navigate(base+"/queues/"+queue),
		chromedp.WaitVisible(chromedp.CSS(`#clear-limit`)),
		chromedp.Click(chromedp.CSS(`#clear-limit`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
	)
	if limit := text(t, ctx, `#rate-limit`); limit != "none" {
		t.Errorf("after removing the limit the page shows %q", limit)
	}
	if row := queueSettingsRow(t, s, queue); row.RateMax != 0 {
		t.Errorf("after removing the limit rate_max = %d", row.RateMax)
	}
}
