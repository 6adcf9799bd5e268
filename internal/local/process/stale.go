package process

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A revision's process is recorded in the pid directory while it runs.
// Pdeathsig (SIGKILL when the control plane dies) ends it with its parent
// in nearly every case; the record is for the rest (Pdeathsig follows the
// thread that started the child, which the Go runtime may retire), so that
// a restarted control plane does not find a stranger holding a port and
// serving an old revision.

func (r *Runtime) pidFile(w *workload) string {
	if r.opts.PIDDir == "" {
		return ""
	}
	// Namespaces and revision names are DNS labels: no "_" in either.
	return filepath.Join(r.opts.PIDDir, w.namespace+"_"+w.name+".pid")
}

// recordPID notes that pid runs w; the record is removed by forgetPID once
// the process (and its group) is gone.
func (r *Runtime) recordPID(w *workload, pid int) {
	if p := r.pidFile(w); p != "" {
		if err := os.WriteFile(p, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			r.log.Warn("cannot record the revision's pid; a crash may leave it running", "revision", w.name, "error", err)
		}
	}
}

func (r *Runtime) forgetPID(w *workload) {
	if p := r.pidFile(w); p != "" {
		_ = os.Remove(p)
	}
}

// endStale ends the process group of every recorded pid that still runs
// an executable from cacheDir (a pid reused by an unrelated program is
// left alone), and removes the records.
func endStale(pidDir, cacheDir string, log logger) {
	entries, err := os.ReadDir(pidDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pid") {
			continue
		}
		p := filepath.Join(pidDir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && pid > 1 {
			if exe, ok := runsFrom(pid, cacheDir); ok {
				// Its own group (Setpgid): children it started go too.
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				log.Warn("ended a revision process left running by a previous control plane", "pid", pid, "exe", exe,
					"record", e.Name())
			}
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("removing a stale pid record", "file", p, "error", err)
		}
	}
}

// runsFrom reports whether pid is alive and its executable lies under dir
// (read from /proc: where there is none, nothing is ended).
func runsFrom(pid int, dir string) (string, bool) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return "", false
	}
	// A removed executable reads as "<path> (deleted)".
	exe = strings.TrimSuffix(exe, " (deleted)")
	return exe, strings.HasPrefix(exe, dir+string(filepath.Separator))
}
