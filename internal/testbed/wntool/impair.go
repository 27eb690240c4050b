package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// runImpair forwards every frame between two interfaces, as a bridge would,
// but drops LOSS percent of the UDP datagrams to or from PORT and holds
// back REORDER percent of them until three more frames have passed: a
// stand-in for netem's loss and reorder, which this kernel lacks. The hosts'
// sides must not send offloaded super-frames (ethtool -K ... gso off), so
// that each frame read here is one datagram. It prints the counts when
// DURATION has passed or on SIGTERM.
func runImpair(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("impair", flag.ContinueOnError)
	port := fs.Int("port", 6783, "UDP port whose datagrams are impaired")
	seed := fs.Uint64("seed", 1, "random seed")
	pos, err := parseFlags(fs, args, 5, usageImpair)
	if err != nil {
		return err
	}
	var ifs [2]*net.Interface
	for i := range ifs {
		if ifs[i], err = findIface(pos[i]); err != nil {
			return err
		}
	}
	loss, err1 := strconv.ParseFloat(pos[2], 64)
	reorder, err2 := strconv.ParseFloat(pos[3], 64)
	if err1 != nil || err2 != nil || loss < 0 || reorder < 0 || loss+reorder > 100 {
		return fmt.Errorf("bad LOSS %q or REORDER %q: want percentages summing to at most 100", pos[2], pos[3])
	}
	d, err := parseDuration(pos[4])
	if err != nil {
		return err
	}
	var fds [2]int
	for i, ifi := range ifs {
		if fds[i], err = packetSocket(ifi, unix.SOCK_RAW, 0x0003); err != nil {
			return err
		}
		defer unix.Close(fds[i])
	}
	fmt.Fprintf(stderr, "impairing %s <-> %s\n", ifs[0].Name, ifs[1].Name)
	var frames, dropped, reordered atomic.Int64
	var stop atomic.Bool
	time.AfterFunc(d, func() { stop.Store(true) })
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() { <-sigs; stop.Store(true) }()
	var wg sync.WaitGroup
	for dir := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(*seed, uint64(dir)))
			in, out := fds[dir], fds[1-dir]
			to := &unix.SockaddrLinklayer{Ifindex: ifs[1-dir].Index}
			buf := make([]byte, 1<<16)
			var held []byte
			heldFor := 0
			for !stop.Load() {
				n, from, err := unix.Recvfrom(in, buf, 0)
				if err != nil {
					continue // the 100 ms timeout tick
				}
				if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
					continue // our own send to the other side, seen again
				}
				frames.Add(1)
				if isUDPPort(buf[:n], *port) {
					switch p := rng.Float64() * 100; {
					case p < loss:
						dropped.Add(1)
						continue
					case p < loss+reorder && held == nil:
						reordered.Add(1)
						held, heldFor = append([]byte(nil), buf[:n]...), 3
						continue
					}
				}
				_ = unix.Sendto(out, buf[:n], 0, to)
				if held != nil {
					if heldFor--; heldFor == 0 {
						_ = unix.Sendto(out, held, 0, to)
						held = nil
					}
				}
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(stdout, "%d %d %d\n", frames.Load(), dropped.Load(), reordered.Load())
	return nil
}

// isUDPPort reports whether an Ethernet frame holds an IPv4 UDP datagram
// from or to port.
func isUDPPort(eth []byte, port int) bool {
	if len(eth) < 14+28 || eth[12] != 0x08 || eth[13] != 0x00 || eth[14+9] != 17 {
		return false
	}
	udp := eth[14+int(eth[14]&0xf)*4:]
	if len(udp) < 8 {
		return false
	}
	src, dst := int(udp[0])<<8|int(udp[1]), int(udp[2])<<8|int(udp[3])
	return src == port || dst == port
}
