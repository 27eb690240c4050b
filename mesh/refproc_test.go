package mesh

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ref "github.com/weaveworks/mesh"
)

// The reference mesh in a child process. The reference has data races of
// its own; in a process of its own they cannot fail our tests, so the
// interop tests run under the race detector too, with our code checked.
//
// The child is this test binary running TestRefPeerProcess. It prints
// "addr HOST:PORT", then events ("unicast SRC:MSG", "bcast MSG",
// "gossip MSG", "gc NAME" for a peer it garbage-collected) and answers
// ("reply ..."), and reads commands, one a line.

const refProcEnv = "WEAVENET_MESH_REF_PEER"

func TestRefPeerProcess(t *testing.T) {
	spec := os.Getenv(refProcEnv)
	if spec == "" {
		t.Skip("only run as a child process by the interop tests")
	}
	var name uint64
	var password string
	var discovery bool
	fmt.Sscanf(spec, "%d %t %s", &name, &discovery, &password)
	var pw []byte
	if password != "-" {
		pw = []byte(password)
	}
	out := &lockedWriter{w: os.Stdout}
	rx := &reportingRx{received: newReceived(), out: out}
	p := startRefIn(t, PeerName(name), pw, discovery, reportingGossiper{refGossiper{rx.received}, rx})
	p.r.Peers.OnGC(func(peer *ref.Peer) { fmt.Fprintf(out, "gc %d\n", uint64(peer.Name)) })
	fmt.Fprintf(out, "addr %s\n", p.addr)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		switch f[0] {
		case "connect":
			p.r.ConnectionMaker.InitiateConnections([]string{f[1]}, false)
		case "unicast":
			n, _ := strconv.ParseUint(f[1], 10, 64)
			_ = p.g.GossipUnicast(ref.PeerName(n), []byte(f[2]))
		case "broadcast":
			p.g.GossipBroadcast(refData{f[1]})
		case "gossip":
			p.g.GossipNeighbourSubset(refData{f[1]})
		case "sees":
			n, _ := strconv.ParseUint(f[1], 10, 64)
			_, ok := p.r.Routes.Unicast(ref.PeerName(n))
			fmt.Fprintf(out, "reply %t\n", ok)
		case "hops":
			n, _ := strconv.ParseUint(f[1], 10, 64)
			fmt.Fprintf(out, "reply %d\n", len(p.r.Routes.BroadcastAll(ref.PeerName(n))))
		}
	}
	os.Exit(0)
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// reportingRx prints what the child's gossiper receives.
type reportingRx struct {
	*received
	out io.Writer
}

func (r *reportingRx) report(kind string, msg []byte) {
	for _, s := range strings.Split(string(msg), "\n") {
		if s != "" {
			fmt.Fprintf(r.out, "%s %s\n", kind, s)
		}
	}
}

// reportingGossiper wraps refGossiper to print events.
type reportingGossiper struct {
	refGossiper
	rx *reportingRx
}

func (g reportingGossiper) OnGossipUnicast(src ref.PeerName, msg []byte) error {
	fmt.Fprintf(g.rx.out, "unicast %s:%s\n", src, msg)
	return nil
}

func (g reportingGossiper) OnGossipBroadcast(src ref.PeerName, update []byte) (ref.GossipData, error) {
	g.rx.report("bcast", update)
	return g.refGossiper.OnGossipBroadcast(src, update)
}

func (g reportingGossiper) OnGossip(msg []byte) (ref.GossipData, error) {
	g.rx.report("gossip", msg)
	return g.refGossiper.OnGossip(msg)
}

// refProc is the parent's handle on a child reference peer.
type refProc struct {
	name    PeerName
	addr    string
	in      io.Writer
	rx      *received
	replies chan string
	mu      sync.Mutex
}

func startRefProc(t *testing.T, name PeerName, password []byte, discovery bool) *refProc {
	t.Helper()
	pw := "-"
	if password != nil {
		pw = string(password)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRefPeerProcess$", "-test.v=false")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %t %s", refProcEnv, uint64(name), discovery, pw), "GORACE=log_path=/dev/null")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	p := &refProc{name: name, in: in, rx: newReceived(), replies: make(chan string, 16)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			kind, rest, _ := strings.Cut(sc.Text(), " ")
			switch kind {
			case "addr":
				addr <- rest
			case "reply":
				p.replies <- rest
			case "unicast":
				p.rx.mu.Lock()
				p.rx.unicasts = append(p.rx.unicasts, rest)
				p.rx.mu.Unlock()
			case "gc":
				n, _ := strconv.ParseUint(rest, 10, 64)
				p.rx.addGone(PeerName(n))
			case "bcast":
				p.rx.merge([]byte(rest), p.rx.broadcast)
			case "gossip":
				p.rx.merge([]byte(rest), p.rx.gossip)
			}
		}
	}()
	select {
	case p.addr = <-addr:
	case <-time.After(20 * time.Second):
		t.Fatal("the reference peer process did not start")
	}
	return p
}

func (p *refProc) cmd(format string, args ...interface{}) {
	fmt.Fprintf(p.in, format+"\n", args...)
}

func (p *refProc) ask(format string, args ...interface{}) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd(format, args...)
	select {
	case r := <-p.replies:
		return r
	case <-time.After(10 * time.Second):
		return ""
	}
}

func (p *refProc) peerName() PeerName  { return p.name }
func (p *refProc) address() string     { return p.addr }
func (p *refProc) connect(addr string) { p.cmd("connect %s", addr) }
func (p *refProc) broadcast(s string)  { p.cmd("broadcast %s", s) }
func (p *refProc) gossip(s string)     { p.cmd("gossip %s", s) }
func (p *refProc) unicast(to PeerName, s string) error {
	p.cmd("unicast %d %s", uint64(to), s)
	return nil
}
func (p *refProc) inbox() *received { return p.rx }
func (p *refProc) sees(n PeerName) bool {
	return p.ask("sees %d", uint64(n)) == "true"
}
func (p *refProc) broadcastHops(src PeerName) int {
	n, _ := strconv.Atoi(p.ask("hops %d", uint64(src)))
	return n
}
