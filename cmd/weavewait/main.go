// Command weavewait runs first in a container created through the weave
// Docker API proxy: it waits until the container's weave interface is up
// with its addresses, then replaces itself with the container's own
// command, so that command finds the network ready from its first
// instruction. The proxy mounts it read-only into the container and puts it
// in front of the entrypoint: weavewait -n N -- ENTRYPOINT... CMD...
//
// It must stay a static binary with no dependencies beyond the standard
// library: it runs inside arbitrary images.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const ifName = "ethwe"

// poll is how often the interface is looked at: attaching takes tens of
// milliseconds, so the container's start is barely delayed.
const poll = 10 * time.Millisecond

// partialGrace is how long an interface that is up with fewer addresses
// than asked is waited on before the command runs anyway: weaved may give
// one address for two requests that name the same one.
const partialGrace = 5 * time.Second

func main() {
	want, argv, err := parseArgs(os.Args[1:])
	if err != nil {
		fail(err)
	}
	var partialSince time.Time
	for {
		n, up := addrsUp()
		if up && n >= want {
			break
		}
		if up && n > 0 {
			if partialSince.IsZero() {
				partialSince = time.Now()
			} else if time.Since(partialSince) > partialGrace {
				fmt.Fprintf(os.Stderr, "weavewait: %s has %d of %d addresses; starting anyway\n", ifName, n, want)
				break
			}
		}
		time.Sleep(poll)
	}
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		fail(err)
	}
	fail(syscall.Exec(bin, argv, os.Environ()))
}

func parseArgs(args []string) (int, []string, error) {
	want := 1
	for len(args) > 0 && args[0] != "--" {
		if args[0] != "-n" || len(args) < 2 {
			return 0, nil, fmt.Errorf("unknown argument %q: usage: weavewait [-n ADDRS] -- CMD [ARG...]", args[0])
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 0 {
			return 0, nil, fmt.Errorf("-n %q: want a count of addresses", args[1])
		}
		want, args = n, args[2:]
	}
	if len(args) < 2 {
		return 0, nil, errors.New("no command given: usage: weavewait [-n ADDRS] -- CMD [ARG...]")
	}
	return want, args[1:], nil
}

// addrsUp says how many IPv4 addresses the weave interface has and whether
// it is up; 0, false while it is not there yet. It asks the kernel over
// netlink with the syscall package alone: package net would link the C
// resolver in, and this binary has to run in images without a libc.
func addrsUp() (int, bool) {
	index, up := -1, false
	links, err := rib(syscall.RTM_GETLINK, syscall.AF_UNSPEC)
	if err != nil {
		return 0, false
	}
	for _, m := range links {
		if m.Header.Type != syscall.RTM_NEWLINK || len(m.Data) < syscall.SizeofIfInfomsg {
			continue
		}
		ifi := (*syscall.IfInfomsg)(unsafe.Pointer(&m.Data[0]))
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			continue
		}
		for _, a := range attrs {
			if a.Attr.Type == syscall.IFLA_IFNAME && strings.TrimRight(string(a.Value), "\x00") == ifName {
				index, up = int(ifi.Index), ifi.Flags&syscall.IFF_UP != 0
			}
		}
	}
	if index < 0 {
		return 0, false
	}
	addrs, err := rib(syscall.RTM_GETADDR, syscall.AF_INET)
	if err != nil {
		return 0, false
	}
	n := 0
	for _, m := range addrs {
		if m.Header.Type != syscall.RTM_NEWADDR || len(m.Data) < syscall.SizeofIfAddrmsg {
			continue
		}
		ifa := (*syscall.IfAddrmsg)(unsafe.Pointer(&m.Data[0]))
		if int(ifa.Index) == index && ifa.Family == syscall.AF_INET {
			n++
		}
	}
	return n, up
}

func rib(proto, family int) ([]syscall.NetlinkMessage, error) {
	b, err := syscall.NetlinkRIB(proto, family)
	if err != nil {
		return nil, err
	}
	return syscall.ParseNetlinkMessage(b)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "weavewait:", err)
	os.Exit(1)
}
