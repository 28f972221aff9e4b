package queuedtest

import (
	"fmt"
	"slices"
	"testing"
)

// StartProcess runs a server on a fresh database for a whole test binary,
// from TestMain, where there is no *testing.T: runnable examples need a
// server before they start. stop shuts the server down and drops the
// database; call it after m.Run.
func StartProcess(opts ...Option) (srv *Server, stop func(), err error) {
	tb := &processTB{}
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(processFatal); ok {
				tb.cleanup()
				srv, stop, err = nil, nil, f.err
				return
			}
			panic(r)
		}
	}()
	srv = Start(tb, opts...)
	return srv, tb.cleanup, nil
}

// processTB is the part of testing.TB that Start and storetest use. The
// embedded interface is nil: any other method panics, which would show a
// helper that needs more than this.
type processTB struct {
	testing.TB
	cleanups []func()
}

type processFatal struct{ err error }

func (p *processTB) Helper()             {}
func (p *processTB) Cleanup(f func())    { p.cleanups = append(p.cleanups, f) }
func (p *processTB) Logf(string, ...any) {}
func (p *processTB) Fatalf(format string, args ...any) {
	panic(processFatal{err: fmt.Errorf(format, args...)})
}

func (p *processTB) cleanup() {
	for _, f := range slices.Backward(p.cleanups) {
		f()
	}
	p.cleanups = nil
}
