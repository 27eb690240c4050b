package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// parseFlags parses fs and checks that exactly want positional arguments
// remain.
func parseFlags(fs *flag.FlagSet, args []string, want int, usage string) ([]string, error) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%v; usage: wntool %s", err, usage)
	}
	if fs.NArg() != want {
		return nil, fmt.Errorf("want %d arguments, got %d; usage: wntool %s", want, fs.NArg(), usage)
	}
	return fs.Args(), nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("bad port %q: want 1..65535", s)
	}
	return p, nil
}

func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, fmt.Errorf("bad address %q: want IP:PORT", s)
	}
	return ap, nil
}

func parseCount(what, s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad %s %q: want a non-negative integer", what, s)
	}
	return n, nil
}

// parseSize parses a byte count with an optional binary suffix K, M or G
// (200M is 200 MiB).
func parseSize(what, s string) (int64, error) {
	mult := int64(1)
	num := s
	if len(s) > 0 {
		switch s[len(s)-1] {
		case 'k', 'K':
			mult, num = 1<<10, s[:len(s)-1]
		case 'm', 'M':
			mult, num = 1<<20, s[:len(s)-1]
		case 'g', 'G':
			mult, num = 1<<30, s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad %s %q: want a byte count such as 1000, 64K or 200M", what, s)
	}
	return n * mult, nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		// Also accept plain seconds.
		secs, err2 := strconv.ParseFloat(s, 64)
		if err2 != nil || secs <= 0 {
			return 0, fmt.Errorf("bad duration %q: want e.g. 5s", s)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d <= 0 {
		return 0, fmt.Errorf("bad duration %q: must be positive", s)
	}
	return d, nil
}

// findIface resolves an interface name; "auto" picks the only up,
// non-loopback, multicast-capable interface.
func findIface(name string) (*net.Interface, error) {
	if name != "auto" {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("interface %q: %v", name, err)
		}
		return ifi, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var found []net.Interface
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagLoopback == 0 && ifi.Flags&net.FlagMulticast != 0 {
			found = append(found, ifi)
		}
	}
	if len(found) != 1 {
		var n []string
		for _, f := range found {
			n = append(n, f.Name)
		}
		return nil, fmt.Errorf("auto interface: want exactly one up multicast interface, found [%s]; name one", strings.Join(n, " "))
	}
	return &found[0], nil
}
