package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"syscall"
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
		var failed config.Errors
		st.Changed, failed = d.apply(ctx, cfg)
		st.OK = len(failed) == 0
		for _, e := range failed {
			st.Errors = append(st.Errors, d.redactor.String(e.Error()))
			d.log.Error("reload: not applied", "err", e.Error())
		}
		d.log.Info("config reloaded", "changes", len(st.Changed), "failed", len(failed))
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
// accepted. What cannot be applied after all (an output whose plugin does
// not start with its new config, an API address that cannot be bound)
// keeps running as it was, where it can, and is returned as failed. Must
// hold reloadMu.
func (d *Daemon) apply(ctx context.Context, cfg *config.Config) (changed []string, failed config.Errors) {
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
	before := map[string]pluginhost.Spec{} // of outputs restarting: to go back to
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
			before[o.spec.Name] = o.spec
		}
	}

	// Cameras.
	newCams := map[string]config.Camera{}
	for _, c := range cfg.Cameras {
		newCams[c.Name] = c
	}
	lastSeq := map[string]uint64{} // of cameras restarting: numbers go on
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
			lastSeq[c.cfg.Name] = c.cam.LastSeq()
		}
	}
	for _, c := range cfg.Cameras {
		if _, start := newCams[c.Name]; start {
			d.startCamera(c, lastSeq[c.Name])
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
			before[o.spec.Name] = o.spec
			spec, _ := Spec(cfg, index[o.spec.Name])
			newSpecs[o.spec.Name] = spec
			continue
		}
		note("output %s: cameras now %v", o.spec.Name, ns)
	}
	var started []*outputRun
	for _, o := range cfg.Outputs {
		spec, start := newSpecs[o.Name]
		if !start {
			continue
		}
		started = append(started, d.startOutput(cfg, index[o.Name], spec))
		if old.Output(o.Name) != nil {
			note("output %s: restarted", o.Name)
		} else {
			note("output %s: started", o.Name)
		}
	}
	// Each must start as at launch; one that does not goes back to the
	// config it ran before (its plugin refused the new one, or cannot
	// use it: a folder that cannot be made), rather than crash-loop
	// while the reload says ok.
	expired, stop := launchDeadline()
	defer stop()
	for _, r := range started {
		i := index[r.spec.Name]
		err := launched(ctx, r, expired)
		if err == nil {
			continue
		}
		errs := outputErrors(cfg, i, err)
		if prev, ok := before[r.spec.Name]; ok {
			if k := slices.Index(changed, "output "+r.spec.Name+": restarted"); k >= 0 {
				changed[k] = "output " + r.spec.Name + ": not restarted"
			}
			d.stopOutput(r)
			back := d.startOutput(cfg, i, prev)
			state := "it runs its previous config"
			again, stop := launchDeadline()
			err := launched(ctx, back, again)
			stop()
			if err != nil {
				state = "its previous config did not start either: " + err.Error()
			}
			for _, e := range errs {
				e.Msg += " (not applied: " + state + ")"
			}
		}
		failed = append(failed, errs...)
	}

	// The daemon's own listener moves last, once nothing else can fail.
	newSec, oldSec := cfg.Security(-1), old.Security(-1)
	if cfg.HTTP.Listen != d.api.listen || newSec.TLSCert != oldSec.TLSCert || newSec.TLSKey != oldSec.TLSKey {
		if api, err := d.moveAPI(old, cfg); err != nil {
			msg := err.Error()
			if d.api.listen != "" {
				msg += " (camd still serves on " + d.api.url + ")"
			}
			failed = append(failed, cfg.ErrorAt("http.listen", msg))
		} else {
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
	return changed, failed
}

// moveAPI moves camd's own listener to cfg's address and TLS. The old one
// is closed in the background: this very request may be on it. An address
// that overlaps the old one (the same port on another host, or TLS turned
// on or off) can be bound only once the old listener let go, so then it
// stops accepting first, and takes its address back if the new one
// cannot be bound after all.
func (d *Daemon) moveAPI(old, cfg *config.Config) (*apiServer, error) {
	api, err := d.listenAPI(cfg)
	if errors.Is(err, syscall.EADDRINUSE) && (Conflicts(cfg.HTTP.Listen, d.api.addr) || Conflicts(cfg.HTTP.Listen, d.api.listen)) {
		d.api.stopAccepting()
		if api, err = d.listenAPI(cfg); err != nil {
			back, berr := d.listenAPI(old)
			if berr != nil { // taken meanwhile by someone else
				d.log.Error("http.listen: camd's API lost its address; reload again, or restart camd", "listen", old.HTTP.Listen, "err", berr)
				d.api.listen = "" // so that the next reload binds again, whatever its address
				return nil, fmt.Errorf("%w; and the old address could not be taken back (%v): camd's API has no listener", err, berr)
			}
			d.swapAPI(back)
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	d.swapAPI(api)
	return api, nil
}

// swapAPI makes api camd's listener and closes the old one in the
// background.
func (d *Daemon) swapAPI(api *apiServer) {
	old := d.api
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		old.close()
	}()
	d.api = api
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
// to settle before reloading. A config that is a symlink is followed: its
// target's directory is watched too, and the link turning to another file
// (a Kubernetes ConfigMap swaps a ..data link) is a change.
func (d *Daemon) watch(ctx context.Context, path string) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	cw := newConfigWatch(path)
	for _, dir := range cw.dirs() {
		if err := w.Add(dir); err != nil {
			return err
		}
	}
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
			if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) == 0 {
				continue
			}
			if cw.changed(ev.Name) {
				fire = time.After(settle)
				for _, dir := range cw.dirs() {
					_ = w.Add(dir) // a new target's; adding one again is harmless
				}
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

// configWatch tells which file-system events concern a config file, one
// reached through symlinks included.
type configWatch struct {
	name   string // the path camd was given
	target string // what it resolves to now
}

func newConfigWatch(path string) *configWatch {
	cw := &configWatch{name: filepath.Clean(path)}
	cw.target = cw.resolve()
	return cw
}

func (cw *configWatch) resolve() string {
	if t, err := filepath.EvalSymlinks(cw.name); err == nil {
		return t
	}
	return cw.name
}

// dirs are the directories to watch: the given path's and its target's.
func (cw *configWatch) dirs() []string {
	dirs := []string{filepath.Dir(cw.name)}
	if d := filepath.Dir(cw.target); d != dirs[0] {
		dirs = append(dirs, d)
	}
	return dirs
}

// changed reports whether an event on name may have changed the config:
// it names the path or its target, or the path now leads elsewhere.
func (cw *configWatch) changed(name string) bool {
	name = filepath.Clean(name)
	t := cw.resolve()
	moved := t != cw.target
	cw.target = t
	return moved || name == cw.name || name == t
}
