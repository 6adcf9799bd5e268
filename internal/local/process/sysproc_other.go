//go:build unix && !linux

package process

import "syscall"

// sysProcAttr starts a revision's process in its own group, so that
// stopping it stops its children. These systems have no parent-death
// signal, and the next start finds leftovers through /proc, which they
// lack: New refuses them for now (revisions need Linux), and this keeps
// the package building there.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
