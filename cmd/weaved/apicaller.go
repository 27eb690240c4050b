package main

import (
	"context"
	"net"
	"net/http"

	"golang.org/x/sys/unix"
)

// Who changed something: on the socket the kernel names the process at
// the other end (SO_PEERCRED, as it was when the client connected), so a
// change made through the API is logged with the user and process that
// asked. With --api-group several users may drive the network, and the
// log is how an operator finds out which of them reset it. Over TCP only
// the client's port is known.

// callerKey holds a socket client's credentials (unix.Ucred), as the
// kernel took them at connect(): a client cannot claim another's.
type callerKey struct{}

// withCaller is the API server's ConnContext: it notes a socket client's
// credentials for every request on that connection.
func withCaller(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return ctx
	}
	return context.WithValue(ctx, callerKey{}, *cred)
}

// callerAttrs are log attributes that say who sent r.
func callerAttrs(r *http.Request) []any {
	if c, ok := r.Context().Value(callerKey{}).(unix.Ucred); ok {
		return []any{"uid", c.Uid, "gid", c.Gid, "pid", c.Pid}
	}
	return []any{"from", r.RemoteAddr}
}
