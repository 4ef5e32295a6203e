package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Timelapse files are named <sequence>_<capture time in UTC>.jpg,
// 0000000042_20261124T101500.123Z.jpg: the sequence orders them (and keep
// and max_age go by it), the time is for people. Ordering by a counter
// rather than by time means a clock step can never make a new still sort
// before old ones and be pruned right after it is written. The counter
// continues from the largest one in the folder when the writer starts.
// Names without a sequence (written by older versions) count as sequence
// 0, older than any new still.
const (
	nameLayout = "20060102T150405.000Z"
	seqDigits  = 10 // zero-padded, so names sort as text too
)

// tempPrefix marks a file being written. Only whole files are renamed to
// their final name, so a crash leaves at most a temp file, which Start
// removes.
const tempPrefix = ".tmp-"

// repeatLogEvery is how often a camera that still cannot write (low disk,
// failing writes, failing retention) says so again.
const repeatLogEvery = time.Minute

// frameName is the file name of the still numbered seq captured at t.
func frameName(seq uint64, t time.Time) string {
	return fmt.Sprintf("%0*d_%s.jpg", seqDigits, seq, t.UTC().Format(nameLayout))
}

// logLimit says whether a repeated message is due: at once after a
// change of state, then at most every repeatLogEvery.
type logLimit struct{ last time.Time }

func (l *logLimit) due(changed bool) bool {
	if !changed && time.Since(l.last) < repeatLogEvery {
		return false
	}
	l.last = time.Now()
	return true
}

// writer is one camera's timelapse, owned by its goroutine.
type writer struct {
	s       *Snapshot
	c       *camera
	next    uint64 // the sequence number of the next still
	lastVer uint64 // the frame last written
	// wrote is when this run wrote each still it wrote, on the monotonic
	// clock: max_age ages them by it, so a clock step neither deletes
	// nor keeps them early. Only kept while max_age is set.
	wrote   map[string]time.Time
	failing bool // the last write failed
	// tidy: the folder held at most keep stills after the last write, so
	// keep alone has nothing to delete before the next one.
	tidy                   bool
	lowLog, errLog, delLog logLimit
}

// timelapse writes c's newest frame every s.cfg.Every until ctx ends.
// Placeholders are never written: it reads only the camera's own frames.
func (s *Snapshot) timelapse(ctx context.Context, c *camera) {
	w := &writer{s: s, c: c, next: 1, wrote: map[string]time.Time{}}
	if files, _ := listFrames(c.dir); len(files) > 0 {
		w.next = files[len(files)-1].seq + 1
	}
	t := time.NewTicker(time.Duration(s.cfg.Every))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.tick()
	}
}

// tick writes the newest frame if there is a new one, then applies
// retention, so a still is deleted only once a newer one is on disk: a
// write that fails (a full disk, an I/O error) costs no still, even with
// keep: 1. Retention also runs first, before the free-space check, when
// it may free something: max_age on every tick (an offline camera's stills
// still expire), keep until it has had its way (a folder over keep at
// start); what it frees lets a paused timelapse resume.
func (w *writer) tick() {
	s, c := w.s, w.c
	if s.cfg.MaxAge > 0 || !w.tidy {
		w.prune(false)
	}
	f, ver := c.real.Get()
	if ver == 0 || ver == w.lastVer {
		return // the camera is offline or slower than every
	}
	free, err := s.freeSpace(c.dir)
	if err == nil && free < uint64(s.cfg.MinFree) && s.cfg.Keep > 0 && w.prune(true) == nil {
		// A full keep gives its oldest still for the newest: a disk
		// hovering at min_free keeps rotating rather than pausing.
		w.tidy = false
		free, err = s.freeSpace(c.dir)
	}
	if err == nil && free < uint64(s.cfg.MinFree) {
		c.skippedLow.Add(1)
		if w.lowLog.due(!c.lowDisk.Swap(true)) {
			s.log.Error("disk nearly full: timelapse paused (snapshots still served)",
				"camera", c.name, "dir", c.dir, "free_bytes", free, "min_free", int64(s.cfg.MinFree))
		}
		return
	}
	if c.lowDisk.Swap(false) {
		s.log.Info("disk space recovered: timelapse resumed", "camera", c.name, "free_bytes", free)
	}
	name := frameName(w.next, f.Captured)
	if err := w.write(name, f.JPEG); err != nil {
		w.tidy = false
		c.writeErrs.Add(1)
		if w.errLog.due(!w.failing) { // once when writes start failing, then once a minute
			s.log.Error("timelapse write failing", "camera", c.name, "err", err, "failures", c.writeErrs.Load())
		}
		w.failing = true
		return
	}
	if w.failing {
		w.failing = false
		s.log.Info("timelapse writes work again", "camera", c.name)
	}
	if s.cfg.MaxAge > 0 {
		w.wrote[name] = time.Now()
	}
	w.next++
	w.lastVer = ver
	c.written.Add(1)
	w.tidy = w.prune(false) == nil
}

// write writes one still to the camera's folder. A removed folder is made
// again (by hand, a remount) rather than writing stop until a restart. On
// a full disk with keep set, the oldest still makes room for the newest:
// the timelapse rotates instead of stopping.
func (w *writer) write(name string, data []byte) error {
	s, c := w.s, w.c
	err := s.writeFile(c.dir, name, data)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(c.dir, 0o755); err == nil {
			s.log.Warn("timelapse folder was gone: recreated", "camera", c.name, "dir", c.dir)
			err = s.writeFile(c.dir, name, data)
		}
	}
	if errors.Is(err, syscall.ENOSPC) && s.cfg.Keep > 0 {
		if w.prune(true) == nil {
			err = s.writeFile(c.dir, name, data)
		}
	}
	return err
}

// writeAtomic writes data to dir/name so that the file is either absent or
// whole, even if the process is killed at any moment: temp file, fsync,
// rename, fsync of the directory.
func writeAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, tempPrefix+name+"-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// cleanTemp removes temp files left by a crash and returns how many.
func cleanTemp(dir string) int {
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) && os.Remove(filepath.Join(dir, e.Name())) == nil {
			n++
		}
	}
	return n
}

type frameFile struct {
	name     string
	seq      uint64 // 0 for names without one (older versions)
	size     int64
	captured time.Time // from the name
}

// listFrames returns the timelapse files in dir, oldest (lowest sequence)
// first.
func listFrames(dir string) ([]frameFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []frameFile
	for _, e := range entries {
		m := fileRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		t, err := time.Parse(nameLayout, m[2])
		if err != nil {
			continue
		}
		seq, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil && m[1] != "" {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, frameFile{name: e.Name(), seq: seq, size: info.Size(), captured: t})
	}
	slices.SortFunc(out, func(a, b frameFile) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), strings.Compare(a.name, b.name))
	})
	return out, nil
}

// prune applies keep and max_age to the camera's folder, logging what
// fails (at most once a minute). keep keeps the keep highest sequence
// numbers (one fewer when reserve: room for a still about to be written).
// max_age deletes a still older than max_age: one this run wrote by its
// age on the monotonic clock, any other by the capture time in its name
// (one from the future is kept until then).
func (w *writer) prune(reserve bool) error {
	err := w.pruneOnce(reserve)
	if err != nil && w.delLog.due(false) {
		w.s.log.Warn("timelapse retention", "camera", w.c.name, "err", err)
	}
	return err
}

func (w *writer) pruneOnce(reserve bool) error {
	keep, maxAge := w.s.cfg.Keep, time.Duration(w.s.cfg.MaxAge)
	if maxAge == 0 && keep == 0 {
		return nil
	}
	files, err := listFrames(w.c.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing to prune; the next write recreates the folder
	}
	if err != nil {
		return err
	}
	excess := 0 // how many of the oldest go for keep
	if keep > 0 {
		if reserve {
			keep--
		}
		excess = max(0, len(files)-keep)
	}
	now := time.Now()
	expired := func(f frameFile) bool {
		if maxAge == 0 {
			return false
		}
		if at, ok := w.wrote[f.name]; ok {
			return time.Since(at) > maxAge
		}
		return now.Sub(f.captured) > maxAge
	}
	var errs []error
	for i, f := range files {
		if i >= excess && !expired(f) {
			continue
		}
		if err := os.Remove(filepath.Join(w.c.dir, f.name)); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
			continue
		}
		delete(w.wrote, f.name)
	}
	if len(w.wrote) > len(files) { // someone else removed stills: forget them
		listed := map[string]bool{}
		for _, f := range files {
			listed[f.name] = true
		}
		maps.DeleteFunc(w.wrote, func(name string, _ time.Time) bool { return !listed[name] })
	}
	if len(errs) > 0 {
		return fmt.Errorf("removing %d old files: %v", len(errs), errs[0])
	}
	return nil
}
