package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	queued "github.com/queued-dev/queued/clients/go"
)

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// blob shows bytes the way a person wants to read them: JSON as JSON, text
// as a string, anything else as {"base64": "..."}.
type blob []byte

func (b blob) MarshalJSON() ([]byte, error) {
	switch {
	case len(b) == 0:
		return []byte("null"), nil
	case json.Valid(b):
		return b, nil
	case utf8.Valid(b):
		return json.Marshal(string(b))
	}
	return json.Marshal(map[string]string{"base64": base64.StdEncoding.EncodeToString(b)})
}

func (b blob) String() string {
	switch {
	case len(b) == 0:
		return "-"
	case utf8.Valid(b):
		return string(b)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

// jobView is a job as queuectl prints it in JSON.
type jobView struct {
	*queued.Job
	Payload      blob `json:"payload"`
	Result       blob `json:"result,omitempty"`
	LastProgress blob `json:"progress,omitempty"`
}

func viewOf(j *queued.Job) jobView {
	return jobView{Job: j, Payload: j.Payload, Result: j.Result, LastProgress: j.LastProgress}
}

func printJob(w io.Writer, j *queued.Job) {
	line := func(k, v string) { fmt.Fprintf(w, "%-13s %s\n", k+":", v) }
	line("id", fmt.Sprint(j.ID))
	line("queue", j.Queue)
	line("name", j.Name)
	line("state", string(j.State))
	line("attempt", fmt.Sprintf("%d of %d", j.Attempt, j.MaxAttempts))
	line("priority", fmt.Sprint(j.Priority))
	if j.UniqueKey != "" {
		line("unique key", j.UniqueKey)
	}
	line("payload", blob(j.Payload).String())
	if len(j.Metadata) > 0 {
		var pairs []string
		for k, v := range j.Metadata {
			pairs = append(pairs, k+"="+v)
		}
		line("metadata", strings.Join(pairs, " "))
	}
	line("created", stamp(j.CreatedAt))
	line("run at", stamp(j.RunAt))
	if !j.StartedAt.IsZero() {
		line("started", stamp(j.StartedAt))
	}
	if !j.FinishedAt.IsZero() {
		line("finished", stamp(j.FinishedAt))
	}
	if j.LeasedBy != "" {
		line("leased by", fmt.Sprintf("%s until %s", j.LeasedBy, stamp(j.LeaseExpiresAt)))
	}
	if len(j.LastProgress) > 0 {
		line("progress", blob(j.LastProgress).String())
	}
	if len(j.Result) > 0 {
		line("result", blob(j.Result).String())
	}
	for _, e := range j.Errors {
		first, _, _ := strings.Cut(e.Message, "\n")
		line(fmt.Sprintf("error #%d", e.Attempt), fmt.Sprintf("%s %s", stamp(e.At), first))
	}
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339Nano)
}
