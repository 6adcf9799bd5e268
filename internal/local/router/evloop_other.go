//go:build !linux

package router

import "context"

// Event loops are Linux's (epoll); elsewhere every connection has a
// goroutine of its own.

type evLoop struct{}

func (s *Server) startLoops()         {}
func (s *Server) adopt(*rawConn) bool { return false }
func (s *Server) loopConns() int      { return 0 }
func (s *Server) wakeLoops()          {}
func (s *Server) stopLoops(bool)      {}

func (s *Server) waitLoops(context.Context) error { return nil }

// evMaxAnswer is Linux's bound, so that tests size answers alike
// everywhere.
const evMaxAnswer = 64 << 10
