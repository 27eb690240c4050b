package meshgate

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"syscall"
	"unsafe"
)

// Why a socket pair dressed as a TCP connection.
//
// mesh reads the handshake straight from the *net.TCPConn it is given (its
// accept step takes that concrete type, not a net.Conn), so no wrapper
// can sit between the socket and its reads. What mesh gets instead is one
// end of a Unix socket pair, typed *net.TCPConn and carrying the real
// connection's addresses (mesh uses them for trusted subnets, for the
// addresses it gossips and for the overlay's UDP peer); the Gate copies
// between the real connection and the other end, holding back what must
// not reach mesh before authentication. Both net.TCPConn and net.UnixConn
// are a struct holding only net's unexported conn, so the one converts to
// the other; the addresses are set in net's file descriptor by
// reflection. pairConn checks every field it touches and fails, rather
// than guess, if a Go release changes them; TestPairConn fails then too.

// pairConn returns a Unix socket pair: meshSide typed as a TCP connection
// with laddr and raddr as its addresses, and ours, the end the Gate copies
// to and from. The caller owns both and closes both.
func pairConn(laddr, raddr *net.TCPAddr) (meshSide *net.TCPConn, ours *net.UnixConn, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("meshgate: socketpair: %w", err)
	}
	a, err := fileConn(fds[0])
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	b, err := fileConn(fds[1])
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	tc, err := asTCPConn(a, laddr, raddr)
	if err != nil {
		a.Close()
		b.Close()
		return nil, nil, err
	}
	return tc, b, nil
}

func fileConn(fd int) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), "meshgate")
	defer f.Close() // FileConn took a duplicate
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("meshgate: socketpair: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("meshgate: socketpair gave a %T", c)
	}
	return uc, nil
}

var errNetLayout = errors.New("meshgate: this Go release's net.UnixConn/net.TCPConn layout is not the one known")

// asTCPConn gives uc the addresses laddr and raddr and returns it typed as
// a *net.TCPConn. uc must not be used as a UnixConn afterwards.
func asTCPConn(uc *net.UnixConn, laddr, raddr *net.TCPAddr) (*net.TCPConn, error) {
	ut, tt := reflect.TypeOf(net.UnixConn{}), reflect.TypeOf(net.TCPConn{})
	if ut.NumField() != 1 || tt.NumField() != 1 || ut.Field(0).Type != tt.Field(0).Type ||
		ut.Size() != tt.Size() {
		return nil, errNetLayout
	}
	conn := reflect.ValueOf(uc).Elem().Field(0)
	if conn.Kind() != reflect.Struct || conn.NumField() != 1 {
		return nil, errNetLayout
	}
	fdp := conn.Field(0)
	if fdp.Kind() != reflect.Pointer || fdp.IsNil() || fdp.Elem().Kind() != reflect.Struct {
		return nil, errNetLayout
	}
	fd := fdp.Elem()
	addrType := reflect.TypeOf((*net.Addr)(nil)).Elem()
	for _, f := range []struct {
		name string
		addr net.Addr
	}{{"laddr", laddr}, {"raddr", raddr}} {
		field := fd.FieldByName(f.name)
		if !field.IsValid() || field.Type() != addrType {
			return nil, errNetLayout
		}
		reflect.NewAt(addrType, unsafe.Pointer(field.UnsafeAddr())).Elem().Set(reflect.ValueOf(&f.addr).Elem())
	}
	tc := (*net.TCPConn)(unsafe.Pointer(uc))
	if la, ok := tc.LocalAddr().(*net.TCPAddr); !ok || la != laddr {
		return nil, errNetLayout
	}
	if ra, ok := tc.RemoteAddr().(*net.TCPAddr); !ok || ra != raddr {
		return nil, errNetLayout
	}
	return tc, nil
}
