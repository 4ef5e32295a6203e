package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procTree is a relay's processes: its main process and, for camd, the
// plugin processes it started.
type procTree struct{ root int }

// pids returns the root and its descendants.
func (p procTree) pids() []int {
	parent := map[int]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// The name may hold spaces and parentheses: fields start after
		// the last ')'.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 {
			parent[pid], _ = strconv.Atoi(f[1])
		}
	}
	out := []int{p.root}
	for i := 0; i < len(out); i++ {
		for pid, pp := range parent {
			if pp == out[i] {
				out = append(out, pid)
			}
		}
	}
	return out
}

// cpu returns the CPU time the processes have used, from each thread's
// schedstat (nanoseconds, unlike stat's 10 ms ticks: the idle cost is a few
// milliseconds a second).
func (p procTree) cpu() time.Duration {
	var total time.Duration
	for _, pid := range p.pids() {
		total += threadsCPU(pid)
	}
	return total
}

// threadsCPU returns the CPU time of pid's threads.
func threadsCPU(pid int) time.Duration {
	var total time.Duration
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

// rss returns the resident memory of the processes, in bytes.
func (p procTree) rss() int64 {
	var total int64
	for _, pid := range p.pids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}
