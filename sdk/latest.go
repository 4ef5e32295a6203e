package sdk

import (
	"context"
	"sync"
)

// Latest holds the newest value of something that changes (typically a
// camera's newest frame) and lets any number of goroutines wait for a newer
// one. It is how a plugin fans a camera out to viewers with latest-frame-wins
// semantics: each viewer remembers the version it last saw and asks for the
// next, skipping whatever it was too slow for. The zero value is ready to
// use.
type Latest[T any] struct {
	mu      sync.Mutex
	v       T
	ver     uint64        // 0 until the first Set
	changed chan struct{} // closed and replaced by Set
}

// Set stores v and wakes every waiter.
func (l *Latest[T]) Set(v T) {
	l.mu.Lock()
	l.v = v
	l.ver++
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	l.mu.Unlock()
}

// Get returns the current value and its version; version 0 means nothing
// was ever set.
func (l *Latest[T]) Get() (T, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.v, l.ver
}

// Next waits until the version is newer than after and returns the value
// then current (not necessarily after+1: values in between are skipped).
func (l *Latest[T]) Next(ctx context.Context, after uint64) (T, uint64, error) {
	for {
		l.mu.Lock()
		if l.ver > after {
			v, ver := l.v, l.ver
			l.mu.Unlock()
			return v, ver, nil
		}
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			var zero T
			return zero, 0, ctx.Err()
		case <-ch:
		}
	}
}
