//go:build !linux

package main

import (
	"errors"
	"net"
)

func serveEpollFloor(net.Listener) error { return errors.New("the epoll floor server is Linux's") }
