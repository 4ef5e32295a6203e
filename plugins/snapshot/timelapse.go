package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// nameLayout names timelapse files by capture time (UTC), so names sort in
// time order: 20261124T101500.123Z.jpg.
const nameLayout = "20060102T150405.000Z"

// tempPrefix marks a file being written. Only whole files are renamed to
// their final name, so a crash leaves at most a temp file, which Start
// removes.
const tempPrefix = ".tmp-"

// lowDiskLogEvery is how often a camera that cannot write for lack of
// space says so again.
const lowDiskLogEvery = time.Minute

// timelapse writes c's newest frame every s.cfg.Every until ctx ends.
// Placeholders are never written: it reads only the camera's own frames.
func (s *Snapshot) timelapse(ctx context.Context, c *camera) {
	t := time.NewTicker(time.Duration(s.cfg.Every))
	defer t.Stop()
	var lastVer uint64
	var lastLowLog time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f, ver := c.real.Get()
		if ver == 0 || ver == lastVer {
			continue // nothing new: the camera is offline or slower than every
		}
		free, err := s.freeSpace(c.dir)
		if err == nil && free < uint64(s.cfg.MinFree) {
			c.skippedLow.Add(1)
			if !c.lowDisk.Swap(true) || time.Since(lastLowLog) > lowDiskLogEvery {
				lastLowLog = time.Now()
				s.log.Error("disk nearly full: timelapse paused (snapshots still served)",
					"camera", c.name, "dir", c.dir, "free_bytes", free, "min_free", int64(s.cfg.MinFree))
			}
			continue
		}
		if c.lowDisk.Swap(false) {
			s.log.Info("disk space recovered: timelapse resumed", "camera", c.name, "free_bytes", free)
		}
		if err := writeAtomic(c.dir, f.Captured.UTC().Format(nameLayout)+".jpg", f.JPEG); err != nil {
			c.writeErrs.Add(1)
			s.log.Error("timelapse write", "camera", c.name, "err", err)
			continue
		}
		lastVer = ver
		c.written.Add(1)
		if err := s.prune(c.dir, time.Now()); err != nil {
			s.log.Warn("timelapse retention", "camera", c.name, "err", err)
		}
	}
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
	size     int64
	captured time.Time
}

// listFrames returns the timelapse files in dir, oldest first.
func listFrames(dir string) ([]frameFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []frameFile
	for _, e := range entries {
		if !fileRE.MatchString(e.Name()) {
			continue
		}
		t, err := time.Parse(nameLayout, strings.TrimSuffix(e.Name(), ".jpg"))
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, frameFile{name: e.Name(), size: info.Size(), captured: t})
	}
	slices.SortFunc(out, func(a, b frameFile) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// prune applies keep and max_age to dir.
func (s *Snapshot) prune(dir string, now time.Time) error {
	if s.cfg.Keep == 0 && s.cfg.MaxAge == 0 {
		return nil
	}
	files, err := listFrames(dir)
	if err != nil {
		return err
	}
	drop := 0
	if s.cfg.Keep > 0 && len(files) > s.cfg.Keep {
		drop = len(files) - s.cfg.Keep
	}
	if s.cfg.MaxAge > 0 {
		cutoff := now.Add(-time.Duration(s.cfg.MaxAge))
		for drop < len(files) && files[drop].captured.Before(cutoff) {
			drop++
		}
	}
	var errs []error
	for _, f := range files[:drop] {
		if err := os.Remove(filepath.Join(dir, f.name)); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("removing %d old files: %v", len(errs), errs[0])
	}
	return nil
}
