package service

import (
	"context"
	"io"
)

// Closer is the one closing contract: anything the service must stop on
// the way out. Close must stop within ctx's deadline, or give up and
// return ctx's error. A *messaging.Publisher is a Closer as it is; the
// other shapes have adapters:
//
//	Close(ctx) error          service.WithCloser(publisher)
//	a shutdown func           service.WithCloser(service.CloseFunc(shutdown))
//	Deregister(ctx) error     service.WithCloser(service.CloseFunc(registered.Deregister))
//	Close() error             service.WithCloser(service.CloseIO(conn))
//	Run(ctx) + Stop(ctx)      service.WithConsumer(consumer) (any Runner)
type Closer interface {
	Close(ctx context.Context) error
}

// CloseFunc adapts a function to Closer: the shutdown func of
// tracing.Setup, a method value such as registered.Deregister or
// consumer.Stop, or a closure.
type CloseFunc func(ctx context.Context) error

// Close calls f(ctx).
func (f CloseFunc) Close(ctx context.Context) error { return f(ctx) }

// CloseIO adapts an io.Closer (a *grpc.ClientConn, a *sql.DB, a file) to
// Closer. Its Close cannot be bounded: when ctx ends first, Close returns
// ctx's error and lets c.Close finish in the background.
func CloseIO(c io.Closer) Closer {
	return CloseFunc(func(ctx context.Context) error {
		done := make(chan error, 1)
		go func() { done <- c.Close() }()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// Runner is something that runs until stopped, such as a
// *messaging.Consumer: Run blocks until ctx ends or Stop is called; Stop
// stops taking new work, waits for the work in flight within ctx's
// deadline, and waits for Run to return.
type Runner interface {
	Run(ctx context.Context) error
	Stop(ctx context.Context) error
}

// RunFunc adapts a function that runs until its context ends, such as
// (*config.Config).Watch, to Runner: Stop cancels that context and waits
// for the function to return, within Stop's context.
func RunFunc(run func(ctx context.Context) error) Runner {
	return &runFunc{run: run, started: make(chan struct{}), done: make(chan struct{})}
}

type runFunc struct {
	run     func(ctx context.Context) error
	cancel  context.CancelFunc
	started chan struct{}
	done    chan struct{}
}

func (f *runFunc) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	f.cancel = cancel
	close(f.started)
	defer close(f.done)
	return f.run(ctx)
}

func (f *runFunc) Stop(ctx context.Context) error {
	select {
	case <-f.started:
	default:
		return nil // never ran
	}
	f.cancel()
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
