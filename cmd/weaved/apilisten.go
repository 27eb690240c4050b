package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"weavenet/api"
)

// The API's socket is the daemon's user's only: mode 0600, so that no
// other local user can attach, reset or read the report. It is born with
// that mode (the umask is narrowed around bind), because a client that
// connects while it is wider keeps its connection after a chmod.
// --api-group opens it to one group (0660), as Docker's socket is to the
// docker group: the operator's choice of who may drive the network
// without sudo, which is as much power as root's over it.

// staleProbe bounds the dial that decides whether a socket left at the
// API's path still has a daemon behind it.
const staleProbe = time.Second

// listenAPI claims the API address. It is how a second daemon on this host
// finds out that one is already running, so it comes before anything else.
// stale reports that a socket a dead daemon left was removed. A socket
// gets group gid and mode 0660 when gid is not noGroup.
func listenAPI(a api.Addr, gid int) (ln net.Listener, stale bool, err error) {
	if !a.IsUnix() {
		ln, err := net.Listen("tcp", a.Address)
		if err != nil {
			return nil, false, fmt.Errorf("--http-addr %s: %w (is weave already running?)", a, err)
		}
		return ln, false, nil
	}
	dir := filepath.Dir(a.Address)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("--http-addr %s: %w", a, err)
	}
	// Two daemons starting at once must not both find the socket stale
	// and the second remove the first's fresh one: the check, the removal
	// and the bind happen under a lock beside the socket.
	unlock, err := lockSocket(a.Address)
	if err != nil {
		return nil, false, fmt.Errorf("--http-addr %s: %w", a, err)
	}
	defer unlock()
	if stale, err = removeStale(a.Address); err != nil {
		return nil, false, fmt.Errorf("--http-addr %s: %w", a, err)
	}
	// The umask is the process's: narrowing it is safe only because
	// nothing else creates files this early in the daemon's life.
	old := syscall.Umask(0o177)
	ln, err = net.Listen("unix", a.Address)
	syscall.Umask(old)
	if err != nil {
		return nil, false, fmt.Errorf("--http-addr %s: %w (is weave already running?)", a, err)
	}
	// Stated, not left to the umask's arithmetic; the group is given
	// before the mode lets it in.
	mode := os.FileMode(0o600)
	if gid != noGroup {
		if err := os.Chown(a.Address, -1, gid); err != nil {
			ln.Close()
			return nil, false, fmt.Errorf("--api-group: %w", err)
		}
		mode = 0o660
	}
	if err := os.Chmod(a.Address, mode); err != nil {
		ln.Close()
		return nil, false, fmt.Errorf("--http-addr %s: %w", a, err)
	}
	return ln, stale, nil
}

// noGroup: the API socket is the daemon's user's only.
const noGroup = -1

// apiGroup reads --api-group: a group name or number, which must exist
// (a typo would otherwise leave the socket to whoever gets that number
// later), and only for a socket (TCP has no owner to check).
func apiGroup(v string, a api.Addr) (int, error) {
	if v == "" {
		return noGroup, nil
	}
	if !a.IsUnix() {
		return noGroup, fmt.Errorf("--api-group %s: only a Unix socket has a group; --http-addr %s is TCP", v, a)
	}
	g, err := user.LookupGroup(v)
	if err != nil {
		if _, numErr := strconv.ParseUint(v, 10, 32); numErr != nil {
			return noGroup, fmt.Errorf("--api-group %s: no such group in the system's groups: create it first (groupadd %s)", v, v)
		}
		if g, err = user.LookupGroupId(v); err != nil {
			return noGroup, fmt.Errorf("--api-group %s: no such group number in the system's groups: give an existing group's name or number", v)
		}
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil || gid < 0 {
		return noGroup, fmt.Errorf("--api-group %s: group number %q is not a number", v, g.Gid)
	}
	return gid, nil
}

// removeStale removes what is at path if it is a socket nobody answers on
// (a daemon killed before it could remove it). A socket that answers is a
// running daemon's; anything that is not a socket is not ours to remove.
func removeStale(path string) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case fi.Mode().Type() != os.ModeSocket:
		return false, fmt.Errorf("%s exists and is not a socket: remove it, or give another --http-addr", path)
	}
	conn, err := net.DialTimeout("unix", path, staleProbe)
	if err == nil {
		conn.Close()
		return false, errors.New("a daemon answers on it (is weave already running?)")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return false, fmt.Errorf("cannot tell whether a daemon answers on it: %w (is weave already running?)", err)
	}
	if err := os.Remove(path); err != nil {
		return false, fmt.Errorf("removing a stale socket: %w", err)
	}
	return true, nil
}

// lockWait bounds how long a daemon waits for another one starting at the
// same time to claim the socket.
const lockWait = 5 * time.Second

// lockSocket takes an exclusive flock on path+".lock" until the returned
// func runs. The lock file is left in place (removing it would race the
// next taker); it is mode 0600, so that no other user can hold the lock,
// and opened without following a symlink.
func lockSocket(path string) (func(), error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(lockWait); ; time.Sleep(50 * time.Millisecond) {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s.lock: %w (is another weave starting?)", path, err)
		}
	}
}
