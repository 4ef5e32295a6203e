// Package router moves frames from cameras to outputs. A camera publishes
// each frame once; every output that subscribes to that camera gets it in
// its own Mailbox, which keeps only the newest frame per camera, so a slow
// output drops frames instead of delaying the camera or other outputs.
package router

import (
	"sync"

	"github.com/camd/camd/sdk/wire"
)

// Sink receives frames. Offer must not block. It reports whether the sink
// kept f's JPEG (to send later); one that copied it out or ignored f did
// not, and the camera may then reuse the bytes for its next frame.
type Sink interface {
	Offer(f wire.Frame) (kept bool)
}

// Router maps camera names to the sinks subscribed to them.
type Router struct {
	mu   sync.RWMutex
	subs map[string][]Sink
}

// New returns an empty Router.
func New() *Router { return &Router{subs: map[string][]Sink{}} }

// Subscribe makes s receive the frames of camera.
func (r *Router) Subscribe(camera string, s Sink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subs[camera] = append(r.subs[camera], s)
}

// Unsubscribe stops s receiving frames of camera.
func (r *Router) Unsubscribe(camera string, s Sink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	subs := r.subs[camera]
	for i, x := range subs {
		if x == s {
			r.subs[camera] = append(subs[:i:i], subs[i+1:]...)
			return
		}
	}
}

// Publish hands f to every sink subscribed to its camera. The JPEG bytes
// are shared, not copied. It reports whether any sink kept them.
func (r *Router) Publish(f wire.Frame) (kept bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.subs[f.Camera] {
		if s.Offer(f) {
			kept = true
		}
	}
	return kept
}
