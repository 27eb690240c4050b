package router

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The router's UDP socket, with the kernel's batching where it has it. UDP
// GSO (UDP_SEGMENT) sends a run of equal-sized datagrams with one sendmsg,
// and the kernel keeps them one packet until it must split them; UDP GRO
// hands over a run of datagrams from one sender with one recvmsg. A
// 64 KiB super-frame cut into 45 datagrams thus costs one system call, and on
// a virtual underlay not even a split, instead of 45 sends.
//
// Every system call on the socket is raw (unix.RawSyscall) and made from a
// poller callback: the socket is non-blocking, so no call can block, and a
// call made the usual way lets the Go runtime hand the processor to another
// thread whenever it lasts over 20 µs, which a send that runs the receiving
// end's input often does. On a small machine that thread hopping, and the
// runtime monitor that wakes every 20 µs to drive it, cost a sixth of the
// single-stream throughput.

const (
	// maxGSOBytes bounds one UDP GSO send: all its datagrams together form
	// one IP packet before the split.
	maxGSOBytes = maxUDPPayload
	// maxGSOSegments is UDP_MAX_SEGMENTS of older kernels (newer allow 128).
	maxGSOSegments = 64
	// groBufLen holds the largest run UDP GRO hands over.
	groBufLen = 65535
)

type udpSocket struct {
	conn *net.UDPConn
	rc   syscall.RawConn // conn's, taken once: every send and read goes through it
	// gso: the kernel takes UDP_SEGMENT. Cleared for good if a GSO send
	// fails in a way that says the path cannot do it.
	gso atomic.Bool
	gro bool
	// sends holds *sendOp for send: every loop sends.
	sends sync.Pool
}

// listenUDP opens the sleeve socket on laddr: fragmenting allowed (a peer's
// MTU may exceed the underlay's), big buffers for bursts, GRO on if the
// kernel has it.
func listenUDP(laddr *net.UDPAddr) (*udpSocket, error) {
	conn, err := net.ListenUDP("udp4", laddr)
	if err != nil {
		return nil, fmt.Errorf("listen on UDP %v: %w", laddr, err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &udpSocket{conn: conn, rc: rc}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT); serr != nil {
			serr = fmt.Errorf("IP_MTU_DISCOVER: %w", serr)
			return
		}
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			// Only root may force; fall back to the capped variant.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, 8<<20) != nil {
				plain := unix.SO_SNDBUF
				if opt == unix.SO_RCVBUFFORCE {
					plain = unix.SO_RCVBUF
				}
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, plain, 8<<20)
			}
		}
		// Reading UDP_SEGMENT back tells whether the kernel knows it.
		_, gsoErr := unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT)
		s.gso.Store(gsoErr == nil)
		s.gro = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("configure UDP socket: %w", err)
	}
	return s, nil
}

// send sends one datagram.
func (s *udpSocket) send(pkt []byte, to netip.AddrPort) error {
	if !to.Addr().Is4() {
		return fmt.Errorf("send to %v: the sleeve socket is IPv4", to)
	}
	if len(pkt) == 0 {
		return errors.New("send: empty datagram")
	}
	op, _ := s.sends.Get().(*sendOp)
	if op == nil {
		op = newSendOp()
	}
	defer s.sends.Put(op)
	op.pkt, op.errno = pkt, 0
	op.sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: to.Addr().As4()}
	port := to.Port()
	op.sa.Port = port>>8 | port<<8 // network order in memory
	err := s.rc.Write(op.call)
	op.pkt = nil
	if err == nil && op.errno != 0 {
		err = op.errno
	}
	return err
}

// A sendOp is one datagram's sendto, with its poller callback built once
// so that a send allocates nothing.
type sendOp struct {
	pkt   []byte
	sa    unix.RawSockaddrInet4
	errno syscall.Errno
	call  func(fd uintptr) bool
}

func newSendOp() *sendOp {
	op := &sendOp{}
	op.call = func(fd uintptr) bool {
		for {
			_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&op.pkt[0])), uintptr(len(op.pkt)),
				0, uintptr(unsafe.Pointer(&op.sa)), unix.SizeofSockaddrInet4)
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait until writable
			}
			op.errno = errno
			return true
		}
	}
	return op
}

// maxRuns is how many runs a runBatch holds: a 64 KiB super-frame needs two
// (each run is limited to 64 KiB including every segment's headers).
const maxRuns = 4

// A runBatch gathers runs of datagrams to leave with one sendmmsg, each run
// one message that UDP GSO splits (or, where GSO cannot be used, one message
// per datagram). The runs of one super-frame thus reach the peer back to
// back, and its receive loop coalesces them into one write. A batch is used
// by one goroutine at a time (they are pooled).
type runBatch struct {
	buf  []byte // run i is built in buf[i*maxGSOBytes:]
	runs [maxRuns]run
	n    int // runs begun
	to   netip.AddrPort

	// The messages of one sendmmsg, and how many datagrams each holds.
	hdrs   [maxRuns * maxGSOSegments]unix.Mmsghdr
	iovs   [maxRuns * maxGSOSegments]unix.Iovec
	dgrams [maxRuns * maxGSOSegments]int
	oobs   [maxRuns][unix.SizeofCmsghdr + 8]byte // CmsgSpace(2), for GSO messages
	sa     unix.RawSockaddrInet4
	first  int // next message for sendmmsg
	msgs   int
	errno  syscall.Errno
	sendFn func(fd uintptr) bool // built once: a closure per send would allocate
}

// A run is datagrams of one size but the last, back to back.
type run struct {
	end, size, count int
	closed           bool // its last datagram was short: nothing may follow
}

func newRunBatch() *runBatch {
	b := &runBatch{buf: make([]byte, maxRuns*maxGSOBytes)}
	b.sendFn = func(fd uintptr) bool {
		for b.first < b.msgs {
			n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[b.first])), uintptr(b.msgs-b.first), 0, 0, 0)
			switch errno {
			case 0:
				b.first += int(n)
			case unix.EINTR:
			case unix.EAGAIN:
				return false // wait until writable
			default:
				b.errno = errno
				return true
			}
		}
		return true
	}
	return b
}

// reset empties the batch for datagrams to to.
func (b *runBatch) reset(to netip.AddrPort) {
	b.n, b.to = 0, to
}

// slot returns where the next datagram goes, with space bytes free from
// there to build it in: in the current run if it may join it, else in a new
// run. size is the datagram's length if known, for a run takes no datagram
// longer than its first; 0 says the caller's datagrams are all one size but
// the last (segments of one super-frame). ok is false when the batch is
// full and must be sent first.
func (b *runBatch) slot(size, space int) (off int, ok bool) {
	if b.n > 0 {
		r := &b.runs[b.n-1]
		base := (b.n - 1) * maxGSOBytes
		if !r.closed && r.count < maxGSOSegments && (r.count == 0 || size <= r.size) && r.end+space <= base+maxGSOBytes {
			return r.end, true
		}
	}
	if b.n == maxRuns {
		return 0, false
	}
	b.n++
	b.runs[b.n-1] = run{end: (b.n - 1) * maxGSOBytes}
	return b.runs[b.n-1].end, true
}

// add records the datagram of n bytes just written at the room's offset. A
// datagram shorter than its run's first ends the run, since only the last
// may be shorter.
func (b *runBatch) add(n int) {
	r := &b.runs[b.n-1]
	if r.count == 0 {
		r.size = n
	}
	r.end += n
	r.count++
	r.closed = n < r.size
}

// bytes counts the bytes in the batch.
func (b *runBatch) bytes() int {
	total := 0
	for i, r := range b.runs[:b.n] {
		total += r.end - i*maxGSOBytes
	}
	return total
}

// datagrams counts the datagrams in the batch.
func (b *runBatch) datagrams() int {
	total := 0
	for _, r := range b.runs[:b.n] {
		total += r.count
	}
	return total
}

// messages lays out the runs from the run from on as sendmmsg messages:
// one per run with gso, else one per datagram.
func (b *runBatch) messages(from int, gso bool) {
	b.first, b.msgs, b.errno = 0, 0, 0
	for i := from; i < b.n; i++ {
		r := b.runs[i]
		base := i * maxGSOBytes
		if r.count == 0 {
			continue // begun, but the super-frame ended first
		}
		if gso {
			b.message(b.buf[base:r.end], r.count, r.size)
			continue
		}
		for off := base; off < r.end; off += r.size {
			b.message(b.buf[off:min(off+r.size, r.end)], 1, 0)
		}
	}
}

// message adds p, holding datagrams datagrams of gsoSize bytes, as the next
// message.
func (b *runBatch) message(p []byte, datagrams, gsoSize int) {
	m := b.msgs
	b.msgs++
	b.iovs[m].Base = &p[0]
	b.iovs[m].SetLen(len(p))
	b.dgrams[m] = datagrams
	h := &b.hdrs[m].Hdr
	*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.sa)), Namelen: unix.SizeofSockaddrInet4, Iov: &b.iovs[m]}
	h.SetIovlen(1)
	if datagrams > 1 { // only GSO messages, at most one per run
		c := (*unix.Cmsghdr)(unsafe.Pointer(&b.oobs[m][0]))
		c.Level, c.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		c.SetLen(unix.CmsgLen(2))
		binary.NativeEndian.PutUint16(b.oobs[m][unix.SizeofCmsghdr:], uint16(gsoSize))
		h.Control = &b.oobs[m][0]
		h.SetControllen(len(b.oobs[m]))
	}
}

// errGSORefused says that the kernel refused a GSO run to this destination
// because its datagrams exceed the route's MTU; the batch went out one
// message per datagram instead, which the kernel may fragment.
var errGSORefused = errors.New("UDP GSO refused: datagrams exceed the route's MTU")

// sendBatch sends every run of b and empties it, as GSO runs if gso and the
// kernel allows. It returns how many datagrams went out, and errGSORefused
// if GSO was refused for this destination (everything was still sent).
func (s *udpSocket) sendBatch(b *runBatch, gso bool) (int, error) {
	defer func() { b.n = 0 }()
	if !b.to.Addr().Is4() {
		return 0, fmt.Errorf("send to %v: the sleeve socket is IPv4", b.to)
	}
	b.sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: b.to.Addr().As4()}
	port := b.to.Port()
	b.sa.Port = port>>8 | port<<8 // network order in memory
	gso = gso && s.gso.Load()
	b.messages(0, gso)
	sent, err := s.sendmmsg(b)
	tooBig := b.errno == unix.EINVAL || b.errno == unix.EMSGSIZE
	if err != nil || b.errno == 0 || !gso || (!tooBig && b.errno != unix.EIO) {
		if err == nil && b.errno != 0 {
			err = b.errno
		}
		return sent, err
	}
	// EIO: the device cannot checksum for us, which GSO needs: say no more.
	// EINVAL or EMSGSIZE: the datagrams exceed the route's MTU. Either way
	// the rest goes out one message per datagram (GSO messages are runs,
	// so first counts runs).
	refused := tooBig
	if !refused {
		s.gso.Store(false)
	}
	b.messages(b.first, false)
	n, err := s.sendmmsg(b)
	if err == nil && b.errno != 0 {
		err = b.errno
	}
	if err == nil && refused {
		err = errGSORefused
	}
	return sent + n, err
}

// sendmmsg sends b's messages and returns how many datagrams went out. A
// failure of the system call is left in b.errno.
func (s *udpSocket) sendmmsg(b *runBatch) (int, error) {
	if err := s.rc.Write(b.sendFn); err != nil {
		return 0, err
	}
	sent := 0
	for _, d := range b.dgrams[:b.first] {
		sent += d
	}
	return sent, nil
}

// udpReader reads the socket for the receive loop. When the socket has
// nothing more for now, before waiting, it calls idle: that is when the
// coalescer flushes, so a run grows across GRO batches that arrive back to
// back (a super-frame leaves in two GSO sends) yet nothing waits for a
// datagram that is not there. It reuses its message header and control
// buffer, so reading allocates nothing.
type udpReader struct {
	rc   syscall.RawConn
	gro  bool
	idle func()
	read func(fd uintptr) bool // built once: a closure per read would allocate

	msg  unix.Msghdr
	iov  unix.Iovec
	from unix.RawSockaddrInet4
	oob  [64]byte
	n    int
	err  error
}

func (s *udpSocket) reader(idle func()) *udpReader {
	rd := &udpReader{rc: s.rc, gro: s.gro, idle: idle}
	rd.msg.Name = (*byte)(unsafe.Pointer(&rd.from))
	rd.msg.Iov = &rd.iov
	rd.msg.SetIovlen(1)
	rd.msg.Control = &rd.oob[0]
	rd.read = func(fd uintptr) bool {
		for {
			rd.msg.Namelen = unix.SizeofSockaddrInet4
			rd.msg.SetControllen(len(rd.oob))
			n, _, errno := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&rd.msg)), 0)
			switch errno {
			case 0:
				rd.n, rd.err = int(n), nil
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				rd.idle()
				return false // wait until readable, then call again
			default:
				rd.n, rd.err = 0, errno
				return true
			}
		}
	}
	return rd
}

// next reads one datagram, or with GRO a run of them from one sender, into
// b. seg is the size of each datagram of the run but the last (n for one).
// The returned slice of b is valid until the next call.
func (rd *udpReader) next(b []byte) (n, seg int, from netip.AddrPort, err error) {
	rd.iov.Base = &b[0]
	rd.iov.SetLen(len(b))
	if err := rd.rc.Read(rd.read); err != nil {
		return 0, 0, from, err
	}
	if rd.err != nil {
		return 0, 0, from, rd.err
	}
	n, seg = rd.n, rd.n
	if rd.gro {
		if gs := groSize(rd.oob[:rd.msg.Controllen]); gs > 0 && gs < n {
			seg = gs
		}
	}
	port := uint16(rd.from.Port>>8 | rd.from.Port<<8) // network order in memory
	return n, seg, netip.AddrPortFrom(netip.AddrFrom4(rd.from.Addr), port), nil
}

// groSize finds the UDP_GRO control message and returns the segment size it
// carries, or 0.
func groSize(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(binary.NativeEndian.Uint32(oob[unix.SizeofCmsghdr:]))
		}
		oob = oob[min(unix.CmsgSpace(l-unix.SizeofCmsghdr), len(oob)):]
	}
	return 0
}

func (s *udpSocket) close() error { return s.conn.Close() }

func (s *udpSocket) localAddr() netip.AddrPort {
	return s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}
