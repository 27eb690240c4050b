// Command wntool is a small traffic helper for weavenet's namespace tests.
// Every subcommand has a time limit, so nothing it starts can hang a test.
//
//	wntool recv [-timeout D] PORT                   TCP: accept one connection, read to EOF; print "BYTES SHA256"
//	wntool send [-timeout D] ADDR:PORT NBYTES       TCP: send a deterministic pseudorandom stream; print "BYTES SHA256"
//	wntool udp-recv [-timeout D] PORT               UDP: wait for one datagram; print its size
//	wntool udp-send [-count N] ADDR:PORT SIZE       UDP: send N datagrams of SIZE bytes (default 1)
//	wntool udp-echo PORT DURATION                   UDP: send every datagram back; print how many
//	wntool udp-ping [-count N] ADDR:PORT            UDP: N round trips to an echo; print the average in ms
//	wntool mcast-recv GROUP:PORT IFACE TIMEOUT      count the datagrams received on GROUP:PORT within TIMEOUT
//	wntool mcast-send [-count N] GROUP:PORT IFACE   send N datagrams (default 1) to GROUP:PORT out of IFACE
//	wntool garbage-udp [-max-size B] ADDR:PORT N    send N datagrams of random bytes and sizes
//	wntool garbage-tcp [-max-size B] ADDR:PORT N    open N connections, send random bytes, close
//	wntool capture IFACE MARKER DURATION            count frames on IFACE, and those containing MARKER: print "FRAMES MATCHES"
//	wntool dns-stub ADDR:PORT ANSWER DURATION       a DNS server answering every A query with ANSWER
//	wntool capture-udp IFACE PORT MINSIZE DURATION  print in hex the payload of one whole UDP datagram to PORT
//	wntool udp-send-hex ADDR:PORT HEX               send one datagram with that payload
//	wntool udp-send-raw [-count N] [-interval D] SRC:PORT DST:PORT HEX
//	                                                send N datagrams with that payload and any source
//	                                                address (raw socket: IPv4, root)
//	wntool http-get [-timeout D] URL                print the body of a GET
//	wntool dns-query SERVER:PORT NAME TYPE          one DNS question: print rcode, time and answers
//	wntool impair [-port P] IF1 IF2 LOSS REORDER DURATION
//	                                                forward frames between IF1 and IF2, dropping LOSS% and
//	                                                reordering REORDER% of UDP datagrams of port P; print
//	                                                "FRAMES DROPPED REORDERED"
//
// Listeners print "listening on ADDR" on stderr once ready; results go to
// stdout. IFACE may be "auto": the only up, non-loopback, multicast-capable
// interface. Errors are one line on stderr and exit code 1.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type command struct {
	usage string
	run   func(args []string, stdout, stderr io.Writer) error
}

// usage lines, one per subcommand.
const (
	usageRecv       = "recv [-timeout D] PORT"
	usageSend       = "send [-timeout D] [-connect-timeout D] ADDR:PORT NBYTES"
	usageUDPRecv    = "udp-recv [-timeout D] PORT"
	usageUDPSend    = "udp-send [-count N] [-interval D] ADDR:PORT SIZE"
	usageUDPEcho    = "udp-echo PORT DURATION"
	usageUDPPing    = "udp-ping [-count N] [-interval D] ADDR:PORT"
	usageMcastRecv  = "mcast-recv GROUP:PORT IFACE TIMEOUT"
	usageMcastSend  = "mcast-send [-count N] [-interval D] [-size B] GROUP:PORT IFACE"
	usageGarbageUDP = "garbage-udp [-max-size B] [-seed S] ADDR:PORT N"
	usageGarbageTCP = "garbage-tcp [-max-size B] [-seed S] ADDR:PORT N"
	usageCapture    = "capture IFACE MARKER DURATION"
	usageDNSStub    = "dns-stub ADDR:PORT ANSWER DURATION"
	usageCaptureUDP = "capture-udp IFACE PORT MINSIZE DURATION"
	usageUDPSendHex = "udp-send-hex ADDR:PORT HEX"
	usageUDPSendRaw = "udp-send-raw [-count N] [-interval D] SRC:PORT DST:PORT HEX"
	usageHTTPGet    = "http-get [-timeout D] URL"
	usageDNSQuery   = "dns-query SERVER:PORT NAME TYPE"
	usageImpair     = "impair [-port P] [-seed S] IF1 IF2 LOSS REORDER DURATION"
)

var commands = map[string]command{
	"recv":         {usageRecv, runRecv},
	"send":         {usageSend, runSend},
	"udp-recv":     {usageUDPRecv, runUDPRecv},
	"udp-send":     {usageUDPSend, runUDPSend},
	"udp-echo":     {usageUDPEcho, runUDPEcho},
	"udp-ping":     {usageUDPPing, runUDPPing},
	"mcast-recv":   {usageMcastRecv, runMcastRecv},
	"mcast-send":   {usageMcastSend, runMcastSend},
	"garbage-udp":  {usageGarbageUDP, runGarbageUDP},
	"garbage-tcp":  {usageGarbageTCP, runGarbageTCP},
	"capture":      {usageCapture, runCapture},
	"dns-stub":     {usageDNSStub, runDNSStub},
	"capture-udp":  {usageCaptureUDP, runCaptureUDP},
	"udp-send-hex": {usageUDPSendHex, runUDPSendHex},
	"udp-send-raw": {usageUDPSendRaw, runUDPSendRaw},
	"http-get":     {usageHTTPGet, runHTTPGet},
	"dns-query":    {usageDNSQuery, runDNSQuery},
	"impair":       {usageImpair, runImpair},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "wntool: missing subcommand; one of: "+strings.Join(names(), ", "))
		return 2
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "wntool: unknown subcommand %q; one of: %s\n", args[0], strings.Join(names(), ", "))
		return 2
	}
	if err := c.run(args[1:], stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "wntool %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func names() []string {
	var n []string
	for k := range commands {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}
