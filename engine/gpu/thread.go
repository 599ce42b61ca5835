package gpu

import (
	"fmt"
	"runtime"
)

// thread runs every CUDA call of an engine on one locked OS thread: the
// driver keeps the current context per thread while Go moves goroutines
// between threads, so calls are sent here instead of binding the context
// on whatever thread a caller happens to be on.
type thread struct {
	jobs chan func()
	done chan struct{}
}

// startThread starts the thread and runs setup on it; on a setup error
// the thread is gone.
func startThread(setup func() error) (*thread, error) {
	t := &thread{jobs: make(chan func()), done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is never unlocked: it exits with the goroutine, so a
		// thread that had a context bound is not reused by other goroutines.
		defer close(t.done)
		if err := setup(); err != nil {
			errc <- err
			return
		}
		errc <- nil
		for job := range t.jobs {
			job()
		}
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return t, nil
}

// do runs f on the thread and returns its error; a panic in f comes back
// as an error rather than killing the process.
func (t *thread) do(f func() error) (err error) {
	res := make(chan error, 1)
	t.jobs <- func() {
		defer func() {
			if r := recover(); r != nil {
				res <- fmt.Errorf("panic on the CUDA thread: %v", r)
			}
		}()
		res <- f()
	}
	return <-res
}

// stop ends the thread after the jobs already sent.
func (t *thread) stop() {
	close(t.jobs)
	<-t.done
}
