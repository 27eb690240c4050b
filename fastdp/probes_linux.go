//go:build linux

package fastdp

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Probe I/O is batched and kept out of the Go runtime's network poller.
//
// At 50 peers a router sends 49 probes a second and reads as many. One
// system call each, and a poller wake-up for every datagram that arrived
// (the runtime registers sockets edge-triggered for input and output, so
// even a send's freed buffer wakes it), were most of an idle daemon's
// work. So both sockets are plain non-blocking descriptors that the poller
// never sees: the router sends a round's probes with one sendmmsg and,
// once a round, takes what arrived since with recvmmsg. The socket's
// receive buffer holds a round's probes in between.

// mmsghdr is the kernel's struct mmsghdr: a message header and the
// number of bytes the call moved for it.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// Bounds: messages per system call, and per ReadProbes (so that a peer
// flooding the port cannot hold the router's fast loop).
const (
	probeBatch    = 64
	maxProbesRead = 16 * probeBatch
	// probeSockBuf is each probe socket's buffer: a round's probes from
	// 250 peers, two of up to 1.5 KB each, with the kernel's overhead.
	probeSockBuf = 4 << 20
)

// probeIO owns the two probe descriptors and the buffers of their batches.
// mu serializes the calls with each other and with close, so that a
// descriptor number is never used after it was closed (and reused).
type probeIO struct {
	mu       sync.Mutex
	rx, tx   int // -1 once closed
	port     uint16
	frameLen int // the largest frame read; longer ones are cut and dropped
	rxBufs   [][]byte
	rxIov    []unix.Iovec
	rxMsgs   []mmsghdr
	txHdrs   []byte // a VXLAN header per message
	txAddrs  []unix.RawSockaddrInet4
	txIov    []unix.Iovec
	txMsgs   []mmsghdr
}

// openProbeIO opens the packet socket that reads probes arriving through
// the VXLAN device at ifindex (bound to ProbeEtherType only, so other
// frames cost nothing), and the UDP socket that sends them.
func openProbeIO(ifindex int, port int, vni uint32, mtu int) (_ *probeIO, err error) {
	p := &probeIO{rx: -1, tx: -1, port: uint16(port), frameLen: 14 + max(mtu, 1500) + 4}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	proto := htons(ProbeEtherType)
	if p.rx, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(proto)); err != nil {
		return nil, fmt.Errorf("fastdp: probe socket: %w", err)
	}
	if err := unix.Bind(p.rx, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
		return nil, fmt.Errorf("fastdp: bind probe socket: %w", err)
	}
	// Our own probes never go out through the device, but say so.
	_ = unix.SetsockoptInt(p.rx, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	setSockBuf(p.rx, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF)

	if p.tx, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("fastdp: probe sender: %w", err)
	}
	// Probes carry the don't-fragment bit and ignore the cached path MTU,
	// so that one too big for the path is lost (or refused here) rather
	// than fragmented: the VXLAN device's own frames would be.
	if err := unix.SetsockoptInt(p.tx, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE); err != nil {
		return nil, fmt.Errorf("fastdp: probe sender: don't-fragment: %w", err)
	}
	setSockBuf(p.tx, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF)

	p.rxBufs = make([][]byte, probeBatch)
	p.rxIov = make([]unix.Iovec, probeBatch)
	p.rxMsgs = make([]mmsghdr, probeBatch)
	for i := range p.rxMsgs {
		p.rxBufs[i] = make([]byte, p.frameLen)
		p.rxIov[i].Base = &p.rxBufs[i][0]
		p.rxIov[i].SetLen(p.frameLen)
		p.rxMsgs[i].hdr.Iov = &p.rxIov[i]
		p.rxMsgs[i].hdr.SetIovlen(1)
	}
	p.txHdrs = make([]byte, probeBatch*vxlanHdrLen)
	p.txAddrs = make([]unix.RawSockaddrInet4, probeBatch)
	p.txIov = make([]unix.Iovec, 2*probeBatch)
	p.txMsgs = make([]mmsghdr, probeBatch)
	for i := range p.txMsgs {
		hdr := p.txHdrs[i*vxlanHdrLen : (i+1)*vxlanHdrLen]
		putVXLANHeader(hdr, vni)
		p.txIov[2*i].Base = &hdr[0]
		p.txIov[2*i].SetLen(vxlanHdrLen)
		p.txMsgs[i].hdr.Name = (*byte)(unsafe.Pointer(&p.txAddrs[i]))
		p.txMsgs[i].hdr.Namelen = unix.SizeofSockaddrInet4
		p.txMsgs[i].hdr.Iov = &p.txIov[2*i]
		p.txMsgs[i].hdr.SetIovlen(2)
	}
	return p, nil
}

// setSockBuf asks for probeSockBuf, beyond the system's limit where we may
// (force, CAP_NET_ADMIN), else up to it.
func setSockBuf(fd, force, plain int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, probeSockBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, probeSockBuf)
	}
}

var errProbesClosed = errors.New("fastdp: probe sockets closed")

// send sends eth[i] to to[i] for every i, probeBatch per system call. A
// probe the kernel refuses (too big for the path: EMSGSIZE; no route) is
// skipped, and the first such error returned after the others went; a full
// socket buffer ends the round.
func (p *probeIO) send(to []netip.Addr, eth [][]byte) error {
	if len(to) != len(eth) {
		return fmt.Errorf("fastdp: %d probe addresses for %d frames", len(to), len(eth))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tx < 0 {
		return errProbesClosed
	}
	var first error
	for len(to) > 0 {
		n := 0
		for i := range min(len(to), probeBatch) {
			if !to[i].Is4() || len(eth[i]) == 0 {
				first = firstErr(first, fmt.Errorf("fastdp: probe to %v: want an IPv4 peer and a frame", to[i]))
				break
			}
			p.txAddrs[n] = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(p.port), Addr: to[i].As4()}
			p.txIov[2*n+1].Base = &eth[i][0]
			p.txIov[2*n+1].SetLen(len(eth[i]))
			n++
		}
		if n == 0 {
			to, eth = to[1:], eth[1:]
			continue
		}
		sent, errno := p.mmsg(unix.SYS_SENDMMSG, p.tx, p.txMsgs[:n], 0)
		for i := 1; i < 2*n; i += 2 {
			p.txIov[i].Base = nil // not keep the caller's frames alive
		}
		switch {
		case errno == unix.EAGAIN:
			return firstErr(first, fmt.Errorf("fastdp: probes: send buffer full, %d not sent", len(to)))
		case errno != 0:
			// The first message failed: skip it, go on with the rest.
			first = firstErr(first, fmt.Errorf("fastdp: probe to %v: %w", to[0], errno))
			sent = 1
		}
		to, eth = to[sent:], eth[sent:]
	}
	return first
}

// read calls fn with each probe frame (Ethernet header first) that arrived
// since the last call, at most maxProbesRead of them, and returns how many
// it read. fn must not keep the frame.
func (p *probeIO) read(fn func(eth []byte)) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rx < 0 {
		return 0, errProbesClosed
	}
	total := 0
	for total < maxProbesRead {
		got, errno := p.mmsg(unix.SYS_RECVMMSG, p.rx, p.rxMsgs, unix.MSG_DONTWAIT)
		if errno == unix.EAGAIN {
			return total, nil
		}
		if errno != 0 {
			return total, fmt.Errorf("fastdp: read probes: %w", errno)
		}
		for i := range got {
			m := &p.rxMsgs[i]
			if m.hdr.Flags&unix.MSG_TRUNC == 0 && int(m.n) <= p.frameLen {
				fn(p.rxBufs[i][:m.n])
			}
		}
		total += got
		if got < len(p.rxMsgs) {
			return total, nil
		}
	}
	return total, nil
}

// mmsg makes a sendmmsg or recvmmsg call on fd for msgs, retrying when a
// signal interrupts it, and returns how many messages it moved.
func (p *probeIO) mmsg(trap uintptr, fd int, msgs []mmsghdr, flags int) (int, unix.Errno) {
	for {
		// Raw: the call never blocks (MSG_DONTWAIT, non-blocking socket),
		// so the scheduler need not hear of it.
		r, _, errno := unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), uintptr(flags), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		return int(r), errno
	}
}

func (p *probeIO) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, fd := range []*int{&p.rx, &p.tx} {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	return errors.Join(errs...)
}

// firstErr keeps the first error.
func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
