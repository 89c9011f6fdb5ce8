package killtest

import "syscall"

// sysProcAttr makes the kernel kill a node if the test process dies first
// (a panic on -timeout skips the cleanups that would kill it).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
