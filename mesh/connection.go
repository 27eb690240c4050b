package mesh

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"weavenet/internal/wallclock"
)

// A connection to a peer. Three goroutines serve it:
//
//	run:    the handshake, then joining it to the topology and the overlay,
//	        then waiting for an error or the overlay's news, then teardown;
//	reader: reads, time-bounded, and handles each message in order;
//	writer: writes queued messages, then pending gossip, and heartbeats.
//
// run starts the other two and waits for them before it returns. Every
// field set before reader and writer start is read-only afterwards.

const (
	heartbeatInterval = 30 * time.Second
	// readTimeout: a peer sends a heartbeat every 30s, so two missed mean
	// it is gone (checked every heartbeatInterval, so noticed within 90s).
	readTimeout  = 2 * heartbeatInterval
	writeTimeout = 2 * heartbeatInterval
	ctlQueueLen  = 256
)

var (
	errConnectToSelf = errors.New("cannot connect to ourself")
	errClosed        = errors.New("connection closed")
	errRouterClosed  = errors.New("router closed")
)

type peerNameCollisionError struct{ local, remote *Peer }

func (e *peerNameCollisionError) Error() string {
	return fmt.Sprintf("local %q and remote %q peer names collision", e.local, e.remote)
}

// fieldTellsNeighbours is the handshake field by which a peer says that
// it sends each version of its own topology record to every neighbour
// (Router.loop).
const fieldTellsNeighbours = "WeavenetTellsNeighbours"

// LocalConnection is our end of a connection to a peer.
type LocalConnection struct {
	// OverlayConn is the overlay's side, set before the connection is
	// added to the topology.
	OverlayConn OverlayConnection

	router     *Router
	tcp        net.Conn
	outbound   bool
	remoteAddr string
	// uid starts random and becomes ours XOR theirs, the same number at
	// both ends, which breaks ties between duplicate connections.
	uid             uint64
	trustRemote     bool
	trustedByRemote bool
	version         byte
	// tellsNeighbours: the remote sends each version of its own topology
	// record to every neighbour (fieldTellsNeighbours), so a record of it
	// needs relaying only to peers it has no connection to.
	tellsNeighbours bool
	remote          *Peer
	w               frameWriter
	r               frameReader
	// writing: the writer has queued frames since its last flush, under
	// a write deadline set at the first of them (writer goroutine only).
	writing bool

	established atomic.Bool
	// establishedAt: Unix nanoseconds when established became true.
	establishedAt atomic.Int64
	// lastRead: Unix nanoseconds of the last frame read, for the writer's
	// watchdog (see writeLoop).
	lastRead atomic.Int64
	ctl      chan []byte
	kick     chan struct{}
	outMu    sync.Mutex
	gossip   map[*gossipChannel]GossipData
	bcast    map[bcastKey]GossipData

	stop     chan struct{} // closed by shutdown
	stopOnce sync.Once
	errMu    sync.Mutex
	err      error
}

type bcastKey struct {
	c   *gossipChannel
	src PeerName
}

func newLocalConnection(r *Router, tcp net.Conn, outbound bool) *LocalConnection {
	return &LocalConnection{
		router:      r,
		tcp:         tcp,
		outbound:    outbound,
		remoteAddr:  tcp.RemoteAddr().String(),
		uid:         randomUint64(),
		trustRemote: r.trusts(tcp.RemoteAddr()),
		ctl:         make(chan []byte, ctlQueueLen),
		kick:        make(chan struct{}, 1),
		gossip:      map[*gossipChannel]GossipData{},
		bcast:       map[bcastKey]GossipData{},
		stop:        make(chan struct{}),
	}
}

// shutdown ends the connection with err; the first error is kept.
func (c *LocalConnection) shutdown(err error) {
	c.errMu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.errMu.Unlock()
	c.stopOnce.Do(func() { close(c.stop) })
}

func (c *LocalConnection) firstErr() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// Remote is the peer at the other end as its handshake described it.
func (c *LocalConnection) Remote() *Peer { return c.remote }

func (c *LocalConnection) untrusted() bool { return !c.trustRemote || !c.trustedByRemote }

func (c *LocalConnection) fields() map[string]string {
	us := c.router.Peers.ourself()
	f := map[string]string{
		"PeerNameFlavour": PeerNameFlavour,
		"Name":            us.Name.String(),
		"NickName":        us.NickName,
		"ShortID":         strconv.FormatUint(uint64(us.ShortID), 10),
		"UID":             strconv.FormatUint(uint64(us.UID), 10),
		"ConnID":          strconv.FormatUint(c.uid, 10),
		"Trusted":         strconv.FormatBool(c.trustRemote),
		// Weave Net and older weavenet releases ignore it.
		fieldTellsNeighbours: "1",
	}
	c.router.Overlay.AddFeaturesTo(f)
	return f
}

// run serves the connection to its end; acceptNewPeer lets a remote we
// do not know yet join. handshakeDone hears how the handshake ended.
func (c *LocalConnection) run(acceptNewPeer bool, deadline time.Time, onHeader func(), handshakeDone func(error)) {
	r := c.router
	if tc, ok := c.tcp.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	hs := handshake{conn: c.tcp, outbound: c.outbound, minVer: r.protocolMinVersion(), maxVer: r.maxVersion, fields: c.fields(),
		encrypt: r.encrypts(), password: r.sessionPassword, deadline: deadline, onHeader: onHeader}
	res, err := hs.run()
	var id remoteIdentity
	if err == nil {
		if id, err = parseIdentity(res.fields); err != nil {
			err = &handshakeError{failRefused, err}
		}
	}
	if err == nil {
		err = c.register(id, acceptNewPeer)
	}
	if handshakeDone != nil {
		handshakeDone(err)
	}
	if err != nil {
		c.tcp.Close()
		r.connMaker.connectionTerminated(c, err)
		return
	}
	c.version, c.w, c.r = res.version, res.w, res.r
	c.tellsNeighbours = res.fields[fieldTellsNeighbours] == "1"
	c.r.setLimit(maxFrame)
	err = c.join(id, res)
	if err != nil {
		c.shutdown(err)
	}
	var wg sync.WaitGroup
	if err == nil {
		_ = c.tcp.SetDeadline(time.Time{})
		c.lastRead.Store(time.Now().UnixNano())
		wg.Add(2)
		go func() { defer wg.Done(); c.readLoop() }()
		go func() { defer wg.Done(); c.writeLoop() }()
		c.waitLoop()
	}
	c.tcp.Close()
	wg.Wait()
	c.teardown()
}

// register finds the remote in the topology (adding it if new and allowed)
// and holds a reference to it until teardown.
func (c *LocalConnection) register(id remoteIdentity, acceptNewPeer bool) error {
	us := c.router.Ourself
	if id.name == us.Name && id.uid != us.UID {
		return &peerNameCollisionError{c.router.Peers.ourself(), &Peer{Name: id.name, NickName: id.nickName, UID: id.uid}}
	}
	if id.name == us.Name {
		return errConnectToSelf
	}
	p, err := c.router.Peers.addRef(id, acceptNewPeer)
	if err != nil {
		return err
	}
	c.remote = p
	c.trustedByRemote = id.trustsUs
	c.uid ^= id.connID
	return nil
}

// join hands the connection to the overlay and adds it to the topology.
func (c *LocalConnection) join(id remoteIdentity, res handshakeResult) error {
	r := c.router
	var key *[32]byte
	if c.untrusted() {
		key = res.key
	}
	la, _ := c.tcp.LocalAddr().(*net.TCPAddr)
	ra, _ := c.tcp.RemoteAddr().(*net.TCPAddr)
	oc, err := r.Overlay.PrepareConnection(OverlayConnectionParams{
		RemotePeer: c.remote, LocalAddr: la, RemoteAddr: ra, Outbound: c.outbound, ConnUID: c.uid,
		SessionKey: key, SendControlMessage: c.sendControl, Features: res.fields,
	})
	if err != nil {
		return err
	}
	c.OverlayConn = oc
	restarted := c.remote.UID != id.uid
	known, err := r.addConnection(c)
	if err != nil {
		return err
	}
	if restarted || !known {
		r.sendAllGossipDown(c)
	}
	r.connMaker.connectionCreated(c)
	// Only now that the connection is known not to be a duplicate may
	// the overlay start talking on it, unless another connection to the
	// peer replaced it meanwhile.
	select {
	case <-c.stop:
	default:
		oc.Confirm()
	}
	return nil
}

func (c *LocalConnection) waitLoop() {
	oc := c.OverlayConn
	est := oc.EstablishedChannel()
	errs := oc.ErrorChannel()
	for {
		select {
		case <-c.stop:
			return
		case err := <-errs:
			if err == nil {
				err = errors.New("overlay connection failed")
			}
			c.shutdown(err)
			return
		case <-est:
			est = nil
			c.establishedAt.Store(time.Now().UnixNano())
			c.established.Store(true)
			c.router.connectionEstablished(c)
		}
	}
}

func (c *LocalConnection) teardown() {
	r := c.router
	err := c.firstErr()
	if err == nil {
		err = errClosed
	}
	if c.OverlayConn != nil {
		c.OverlayConn.Stop()
	}
	r.deleteConnection(c)
	r.Peers.unref(c.remote.Name)
	r.connMaker.connectionTerminated(c, err)
	if !errors.Is(err, errRouterClosed) {
		r.logf("->[%s|%s]: connection shutting down due to error: %v", c.remoteAddr, c.remote, err)
	}
}

func (c *LocalConnection) readLoop() {
	for {
		msg, err := c.r.readFrame()
		if err != nil {
			c.shutdown(err)
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		if len(msg) == 0 {
			continue
		}
		if err := c.handle(msg[0], msg[1:]); err != nil {
			c.shutdown(err)
			return
		}
	}
}

func (c *LocalConnection) handle(tag byte, body []byte) error {
	switch tag {
	case ProtocolHeartbeat:
	case ProtocolReserved1, ProtocolReserved2, ProtocolReserved3, ProtocolOverlayControlMsg:
		c.OverlayConn.ControlMessage(tag, body)
	case ProtocolGossip, ProtocolGossipUnicast, ProtocolGossipBroadcast:
		return c.router.handleGossip(c, tag, body)
	default:
		c.router.stats.unknownTags.Add(1)
	}
	return nil
}

// ctlWait bounds how long a sender waits for room in a full control queue.
// The queue fills only when the writer has been stuck on a peer that reads
// nothing, its TCP window shut: the senders are other connections' readers
// relaying unicasts and the gossipers' goroutines (IPAM's), which held on
// for the writer's deadline, a minute, and every message to them with it.
// The connection is given up instead, and made again.
const ctlWait = 2 * time.Second

// send queues a protocol message, waiting for room while the connection
// lives, for ctlWait at most.
func (c *LocalConnection) send(tag byte, body []byte) error {
	msg := make([]byte, 1+len(body))
	msg[0] = tag
	copy(msg[1:], body)
	select {
	case c.ctl <- msg:
		return nil
	case <-c.stop:
		return errClosed
	default:
	}
	wait := time.NewTimer(ctlWait)
	defer wait.Stop()
	select {
	case c.ctl <- msg:
		return nil
	case <-c.stop:
		return errClosed
	case <-wait.C:
		err := fmt.Errorf("%s reads nothing: %d messages waiting to go for %v", c.remote, ctlQueueLen, ctlWait)
		c.shutdown(err)
		return err
	}
}

func (c *LocalConnection) sendControl(tag byte, msg []byte) error { return c.send(tag, msg) }

// queueGossip merges update into what is pending for the channel (for
// broadcasts, per source) and wakes the writer.
func (c *LocalConnection) queueGossip(ch *gossipChannel, src PeerName, update GossipData, broadcast bool) {
	c.outMu.Lock()
	if broadcast {
		k := bcastKey{ch, src}
		if d, ok := c.bcast[k]; ok {
			c.bcast[k] = d.Merge(update)
		} else {
			c.bcast[k] = update
		}
	} else if d, ok := c.gossip[ch]; ok {
		c.gossip[ch] = d.Merge(update)
	} else {
		c.gossip[ch] = update
	}
	c.outMu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// pickGossip takes one pending piece of gossip, plain gossip first.
func (c *LocalConnection) pickGossip() (ch *gossipChannel, src PeerName, d GossipData, broadcast bool) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	for ch, d := range c.gossip {
		delete(c.gossip, ch)
		return ch, UnknownPeerName, d, false
	}
	for k, d := range c.bcast {
		delete(c.bcast, k)
		return k.c, k.src, d, true
	}
	return nil, 0, nil, false
}

// writeLoop also keeps the connection's clock. Heartbeats go on the wall
// clock's multiples of heartbeatInterval, the same moment for every
// connection (of every peer kept in step by NTP), and then the writer
// checks that the reader heard from the peer within readTimeout. A read
// deadline renewed at every frame would do the same, but each renewal
// leaves the runtime a timer to wake for at its old time: with 49
// connections those wake-ups came all minute long.
func (c *LocalConnection) writeLoop() {
	hb := wallclock.NewTicker(heartbeatInterval)
	defer hb.Stop()
	us := c.router.Ourself.Name
	for {
		var err error
		select {
		case <-c.stop:
			return
		case msg := <-c.ctl:
			err = c.write(msg)
		case now := <-hb.C:
			if quiet := now.Sub(time.Unix(0, c.lastRead.Load())); quiet > readTimeout {
				err = fmt.Errorf("nothing read from %s for %v", c.remote, quiet.Round(time.Second))
				break
			}
			err = c.write([]byte{ProtocolHeartbeat})
		case <-c.kick:
			for err == nil {
				ch, src, d, bc := c.pickGossip()
				if d == nil {
					break
				}
				for _, part := range d.Encode() {
					if bc {
						err = c.write(gossipFrame(ProtocolGossipBroadcast, ch.name, part, src))
					} else {
						err = c.write(gossipFrame(ProtocolGossip, ch.name, part, us))
					}
					if err != nil {
						break
					}
				}
			}
		}
		// Whatever else is queued goes out in the same write. Control
		// messages (the overlay's heartbeats) never wait behind more
		// than one run of gossip.
		for len(c.ctl) > 0 && err == nil {
			err = c.write(<-c.ctl)
		}
		if err == nil {
			err = c.flush()
		}
		if err != nil {
			c.shutdown(err)
			return
		}
	}
}

// write queues msg, writing out what is queued when it fills the buffer.
func (c *LocalConnection) write(msg []byte) error {
	if !c.writing {
		if err := c.tcp.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
			return err
		}
		c.writing = true
	}
	return c.w.writeFrame(msg)
}

func (c *LocalConnection) flush() error {
	c.writing = false
	return c.w.flush()
}
