//go:build !linux

package killtest

import "syscall"

// sysProcAttr has no parent-death signal outside Linux: a test process that
// dies without its cleanups leaves its nodes running.
func sysProcAttr() *syscall.SysProcAttr { return nil }
