//go:build unix && !linux

package process

import "syscall"

// sysProcAttr starts a revision's process in its own group, so that
// stopping it stops its children. Without a parent-death signal here, a
// process a crashed control plane left is ended at the next start, from
// its pid record.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
