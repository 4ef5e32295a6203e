package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/camd/camd/internal/config"
	"github.com/camd/camd/internal/pluginhost"
)

// ReloadStatus is the outcome of the last reload, in /api/status.
type ReloadStatus struct {
	OK     bool      `json:"ok"`
	At     time.Time `json:"at"`
	Errors []string  `json:"errors,omitempty"` // file:line: key: message
	// Changed names what the reload started, stopped, restarted or
	// retargeted ("camera front: restarted").
	Changed []string `json:"changed,omitempty"`
}

// Reload reads the config file again and, if it is valid as a whole,
// applies the difference: cameras and outputs whose config did not change
// keep running untouched (their viewers stay connected); changed ones
// restart; added and removed ones start and stop; an output whose only
// change is its camera list gets the new list without a restart. An
// invalid file changes nothing: camd keeps running the old config and
// reports why in the result, the log and /api/status.
func (d *Daemon) Reload(ctx context.Context) ReloadStatus {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	st := ReloadStatus{At: time.Now()}
	if !d.running {
		st.Errors = []string{"camd is starting or stopping; try again"}
		return st
	}
	d.mu.Lock()
	path := d.cfg.Path
	d.mu.Unlock()

	cfg, err := config.Load(path)
	var errs config.Errors
	switch {
	case errors.As(err, &errs):
	case err != nil:
		errs = config.Errors{{File: path, Msg: err.Error()}}
	default:
		errs = Check(ctx, cfg, d.log, d.heldAddrs())
	}
	if len(errs) > 0 {
		for _, e := range errs {
			st.Errors = append(st.Errors, d.redactor.String(e.Error()))
			d.log.Error("reload refused; still running the previous config", "err", e.Error())
		}
	} else {
		st.Changed = d.apply(cfg)
		st.OK = true
		d.log.Info("config reloaded", "changes", len(st.Changed))
		for _, c := range st.Changed {
			d.log.Info("reload: " + c)
		}
	}
	d.mu.Lock()
	d.reload = &st
	d.mu.Unlock()
	return st
}

// heldAddrs are the listen addresses this camd holds now: its API's and
// its outputs'. Must hold reloadMu.
func (d *Daemon) heldAddrs() []string {
	held := []string{d.api.listen, d.api.addr}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range d.outputs {
		held = append(held, o.out.Listen()...)
	}
	return held
}

// apply moves the running daemon from its config to cfg, which Check
// accepted. Must hold reloadMu.
func (d *Daemon) apply(cfg *config.Config) (changed []string) {
	d.mu.Lock()
	old := d.cfg
	cams := slices.Clone(d.cameras)
	outs := slices.Clone(d.outputs)
	d.mu.Unlock()
	note := func(format string, args ...any) { changed = append(changed, fmt.Sprintf(format, args...)) }

	d.applySettings(cfg)

	// Outputs that go or restart stop first, so their ports are free for
	// whatever takes them over.
	newSpecs := map[string]pluginhost.Spec{}
	index := map[string]int{}
	for i, o := range cfg.Outputs {
		spec, _ := Spec(cfg, i) // Check succeeded, so this does too
		newSpecs[o.Name], index[o.Name] = spec, i
	}
	var retarget []*outputRun
	for _, o := range outs {
		ns, keep := newSpecs[o.spec.Name]
		switch {
		case !keep:
			d.stopOutput(o)
			note("output %s: stopped", o.spec.Name)
		case sameExceptCameras(o.spec, ns):
			if !slices.Equal(o.out.Cameras(), ns.Cameras) {
				retarget = append(retarget, o)
			}
			delete(newSpecs, o.spec.Name) // handled
		default:
			d.stopOutput(o)
		}
	}

	// Cameras.
	newCams := map[string]config.Camera{}
	for _, c := range cfg.Cameras {
		newCams[c.Name] = c
	}
	for _, c := range cams {
		nc, keep := newCams[c.cfg.Name]
		switch {
		case !keep:
			d.stopCamera(c)
			note("camera %s: stopped", c.cfg.Name)
		case reflect.DeepEqual(c.cfg, nc):
			delete(newCams, c.cfg.Name)
		default:
			d.stopCamera(c)
		}
	}
	for _, c := range cfg.Cameras {
		if _, start := newCams[c.Name]; start {
			d.startCamera(c)
			if old.Camera(c.Name) != nil {
				note("camera %s: restarted", c.Name)
			} else {
				note("camera %s: started", c.Name)
			}
		}
	}

	// Outputs whose only change is their cameras get the new list.
	for _, o := range retarget {
		ns := cfg.Outputs[index[o.spec.Name]].Cameras
		if err := d.retarget(o, ns); err != nil {
			d.log.Warn("cannot change the output's cameras in place; restarting it", "output", o.spec.Name, "err", err)
			d.stopOutput(o)
			spec, _ := Spec(cfg, index[o.spec.Name])
			newSpecs[o.spec.Name] = spec
			continue
		}
		note("output %s: cameras now %v", o.spec.Name, ns)
	}
	for _, o := range cfg.Outputs {
		spec, start := newSpecs[o.Name]
		if !start {
			continue
		}
		d.startOutput(cfg, index[o.Name], spec)
		if old.Output(o.Name) != nil {
			note("output %s: restarted", o.Name)
		} else {
			note("output %s: started", o.Name)
		}
	}

	// The daemon's own listener moves last, once nothing else can fail.
	newSec, oldSec := cfg.Security(-1), old.Security(-1)
	if cfg.HTTP.Listen != d.api.listen || newSec.TLSCert != oldSec.TLSCert || newSec.TLSKey != oldSec.TLSKey {
		if api, err := d.listenAPI(cfg); err != nil {
			d.log.Error("http.listen: keeping the old address", "err", err)
		} else {
			// Closed in the background: this very request may be on it.
			old := d.api
			d.bg.Add(1)
			go func() {
				defer d.bg.Done()
				old.close()
			}()
			d.api = api
			note("api: now on %s/", api.url)
		}
	}

	d.mu.Lock()
	d.cfg = cfg
	// Keep the config's order in status.
	slices.SortStableFunc(d.cameras, func(a, b *cameraRun) int { return cfg.CameraIndex(a.cfg.Name) - cfg.CameraIndex(b.cfg.Name) })
	slices.SortStableFunc(d.outputs, func(a, b *outputRun) int { return index[a.spec.Name] - index[b.spec.Name] })
	d.mu.Unlock()
	d.demandChanged(nil) // outputs and their cameras may have changed
	return changed
}

// retarget changes a running output's cameras: removed cameras stop being
// routed to it before the plugin hears of it, added ones after.
func (d *Daemon) retarget(o *outputRun, cameras []string) error {
	oldCams := o.out.Cameras()
	for _, c := range oldCams {
		if !slices.Contains(cameras, c) {
			d.router.Unsubscribe(c, o.out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.out.SetCameras(ctx, cameras); err != nil {
		for _, c := range oldCams { // as it was, until the restart
			if !slices.Contains(cameras, c) {
				d.router.Subscribe(c, o.out)
			}
		}
		return err
	}
	var added []string
	for _, c := range cameras {
		if !slices.Contains(oldCams, c) {
			d.router.Subscribe(c, o.out)
			added = append(added, c)
		}
	}
	o.spec.Cameras = cameras
	d.demandChanged(added)
	return nil
}

// sameExceptCameras reports whether two specs differ at most in cameras.
func sameExceptCameras(a, b pluginhost.Spec) bool {
	a.Cameras, b.Cameras = nil, nil
	return reflect.DeepEqual(a, b)
}

// watch reloads the config when its file changes, while the config says
// watch: true. Editors save by writing, or by renaming a new file over the
// old one, so it watches the directory, and waits for a burst of events
// to settle before reloading.
func (d *Daemon) watch(ctx context.Context, path string) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(path)); err != nil {
		return err
	}
	name := filepath.Clean(path)
	const settle = 300 * time.Millisecond
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) == name && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				fire = time.After(settle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			d.log.Warn("config watch", "err", err)
		case <-fire:
			fire = nil
			d.mu.Lock()
			on := d.cfg.Watch
			d.mu.Unlock()
			if on {
				d.log.Info("config file changed; reloading", "path", path)
				d.Reload(ctx)
			}
		}
	}
}
