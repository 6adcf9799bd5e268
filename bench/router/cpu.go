package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on Linux for every architecture Go supports).
const clockTick = 10 * time.Millisecond

// processCPU is the user+system CPU time pid has used (threads
// included), with its live child processes' if children is set, from
// /proc: how much of the machine a target spends, which a shared, loaded
// machine does not distort the way it distorts throughput. nginx's
// workers are its master's children; elafros serve's children are the
// revision processes, which are not the router (they are measured as
// direct-a and direct-b), so serve is metered alone.
func processCPU(pid int, children bool) (time.Duration, error) {
	total, err := statCPU(pid)
	if err != nil || !children {
		return total, err
	}
	// A multi-threaded process's children are listed under the thread
	// that started each of them.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	for _, task := range tasks {
		kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if err != nil {
			continue // the thread ended
		}
		for _, f := range strings.Fields(string(kids)) {
			kid, err := strconv.Atoi(f)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/task/%s/children: %q: %w", pid, task.Name(), f, err)
			}
			d, err := processCPU(kid, true)
			if err != nil {
				return 0, err
			}
			total += d
		}
	}
	return total, nil
}

// statCPU reads utime+stime of one process.
func statCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads fields 14 and 15 (utime, stime) of a
// /proc/<pid>/stat line; the command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat %q: no ')' after the command name", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat %q: %d fields after the command name, want at least 13", stat, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat %q: %w", stat, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * clockTick, nil
}

// revisionsCPU is the CPU time the processes pids have used, together.
func revisionsCPU(pids []int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		d, err := statCPU(pid)
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}
