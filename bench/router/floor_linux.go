//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// serveEpollFloor answers floorResponse to every request from one epoll
// loop, edge-triggered, without net/http and without a goroutine per
// connection: what the router's event loop costs on the client side
// alone.
func serveEpollFloor(l net.Listener) error {
	tl, ok := l.(*net.TCPListener)
	if !ok {
		return fmt.Errorf("epoll floor: %T is not a TCP listener", l)
	}
	raw, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	lfd := -1
	var dupErr error = syscall.EBADF
	if err := raw.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if e == 0 {
			lfd, dupErr = int(r), nil
		} else {
			dupErr = e
		}
	}); err != nil {
		return fmt.Errorf("epoll floor: the listener's descriptor: %w", err)
	}
	if dupErr != nil {
		return fmt.Errorf("epoll floor: duplicating the listener: %w", os.NewSyscallError("fcntl", dupErr))
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	const et = 1 << 31 // EPOLLET, which overflows the syscall package's constant in a uint32
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, lfd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(lfd)}); err != nil {
		return err
	}
	bufs := map[int][]byte{}
	resp := []byte(floorResponse)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(ep, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return err
		}
		for _, ev := range events[:max(n, 0)] {
			fd := int(ev.Fd)
			if fd == lfd {
				for {
					c, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
					if err != nil {
						break
					}
					_ = syscall.SetsockoptInt(c, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
					bufs[c] = make([]byte, 0, 4096)
					_ = syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, c, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | et, Fd: int32(c)})
				}
				continue
			}
			b, open := bufs[fd], true
			for open {
				m, err := syscall.Read(fd, b[len(b):cap(b)])
				if m <= 0 {
					if !errors.Is(err, syscall.EAGAIN) {
						open = false
					}
					break
				}
				b = b[:len(b)+m]
				// Every request up to its blank line gets the answer.
				for {
					k := bytes.Index(b, []byte("\r\n\r\n"))
					if k < 0 {
						break
					}
					b = b[:copy(b, b[k+4:])]
					if _, err := syscall.Write(fd, resp); err != nil {
						open = false
						break
					}
				}
				if len(b) == cap(b) { // a head past 4 kB: not a floor request
					open = false
				}
			}
			if open {
				bufs[fd] = b
			} else {
				_ = syscall.Close(fd)
				delete(bufs, fd)
			}
		}
	}
}
