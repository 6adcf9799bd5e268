package process

import "syscall"

// sysProcAttr starts a revision's process in its own group, so that
// stopping it stops its children, and with SIGKILL as its parent-death
// signal, so that no process outlives a crashed control plane.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
