//go:build linux

package fastdp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The allow-list: the kernel decapsulates any UDP datagram that reaches the
// VXLAN port and puts its frame on the bridge, so an nftables table of
// weavenet's own drops datagrams to the port unless their source address
// is a current peer's (see the package doc's Security part):
//
//	table inet weavenet-fastdp-<bridge> {
//		counter dropped
//		set peers { type ipv4_addr }
//		chain input {
//			type filter hook input priority filter
//			meta nfproto ipv4 udp dport PORT ip saddr @peers accept
//			udp dport PORT counter name dropped drop
//		}
//	}
//
// The input hook sees datagrams after reassembly and only those addressed
// to this host, so forwarded traffic is not touched. IPv6 datagrams to the
// port are all dropped: the fast datapath is IPv4 only.

// AllowListTable is the name of the allow-list's nftables table (family
// inet) for the bridge named bridge: one per bridge, so two daemons on one
// host with their own bridges keep their own lists.
func AllowListTable(bridge string) string {
	return "weavenet-fastdp-" + bridge
}

const (
	allowSet     = "peers"
	allowCounter = "dropped"
	allowChain   = "input"
)

// AllowList is the allow-list of one VXLAN port. Its methods are safe for
// concurrent use.
type AllowList struct {
	mu    sync.Mutex
	conn  *nftables.Conn
	table *nftables.Table
	set   *nftables.Set
	peers []netip.Addr // sorted: what the set holds
}

// OpenAllowList makes the allow-list's table for bridge with an empty set
// (every datagram to port dropped), replacing in the same transaction one
// a daemon that died left behind.
func OpenAllowList(bridge string, port int) (*AllowList, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("fastdp allow-list: port %d out of range", port)
	}
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("fastdp allow-list: nftables netlink: %w", err)
	}
	a := &AllowList{conn: conn, table: &nftables.Table{Name: AllowListTable(bridge), Family: nftables.TableFamilyINet}}
	// Adding before deleting makes the delete succeed whether or not a
	// stale table exists; the kernel applies the batch atomically, so a
	// stale list keeps guarding the port until the new one is in.
	conn.AddTable(a.table)
	conn.DelTable(a.table)
	conn.AddTable(a.table)
	counter := &nftables.CounterObj{Table: a.table, Name: allowCounter}
	conn.AddObj(counter)
	a.set = &nftables.Set{Table: a.table, Name: allowSet, KeyType: nftables.TypeIPAddr}
	if err := conn.AddSet(a.set, nil); err != nil {
		conn.CloseLasting()
		return nil, fmt.Errorf("fastdp allow-list: set: %w", err)
	}
	policy := nftables.ChainPolicyAccept
	chain := conn.AddChain(&nftables.Chain{
		Name: allowChain, Table: a.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy,
	})
	dport := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
	}
	accept := append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}, dport...)
	accept = append(accept,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: a.set.Name, SetID: a.set.ID},
		&expr.Verdict{Kind: expr.VerdictAccept},
	)
	conn.AddRule(&nftables.Rule{Table: a.table, Chain: chain, Exprs: accept})
	drop := append(slices.Clone(dport),
		&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: allowCounter},
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
	conn.AddRule(&nftables.Rule{Table: a.table, Chain: chain, Exprs: drop})
	if err := conn.Flush(); err != nil {
		conn.CloseLasting()
		return nil, fmt.Errorf("fastdp allow-list: table inet %s: %w", a.table.Name, err)
	}
	return a, nil
}

// Table is the allow-list's table name.
func (a *AllowList) Table() string { return a.table.Name }

// Set makes addrs (IPv4; others are ignored) the only source addresses
// whose datagrams the VXLAN port accepts. The set is replaced in one
// transaction, so an address in both the old and the new list is never
// refused in between.
func (a *AllowList) Set(addrs []netip.Addr) error {
	want := make([]netip.Addr, 0, len(addrs))
	for _, ad := range addrs {
		if ad = ad.Unmap(); ad.Is4() {
			want = append(want, ad)
		}
	}
	slices.SortFunc(want, func(x, y netip.Addr) int { return x.Compare(y) })
	want = slices.Compact(want)
	a.mu.Lock()
	defer a.mu.Unlock()
	if slices.Equal(want, a.peers) {
		return nil
	}
	a.conn.FlushSet(a.set)
	if len(want) > 0 {
		elems := make([]nftables.SetElement, len(want))
		for i, ad := range want {
			b := ad.As4()
			elems[i] = nftables.SetElement{Key: b[:]}
		}
		if err := a.conn.SetAddElements(a.set, elems); err != nil {
			return fmt.Errorf("fastdp allow-list: %w", err)
		}
	}
	if err := a.conn.Flush(); err != nil {
		return fmt.Errorf("fastdp allow-list: set %d peers: %w", len(want), err)
	}
	a.peers = want
	return nil
}

// Peers is what the set holds now.
func (a *AllowList) Peers() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.peers)
}

// Dropped is how many datagrams (and their bytes) to the VXLAN port the
// list has dropped.
func (a *AllowList) Dropped() (packets, bytes uint64, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	o, err := a.conn.GetObject(&nftables.CounterObj{Table: a.table, Name: allowCounter})
	if err != nil {
		return 0, 0, fmt.Errorf("fastdp allow-list: read counter: %w", err)
	}
	c, ok := o.(*nftables.CounterObj)
	if !ok {
		return 0, 0, fmt.Errorf("fastdp allow-list: counter is a %T", o)
	}
	return c.Packets, c.Bytes, nil
}

// Close removes the table; the port then accepts datagrams from anyone,
// which is harmless once the VXLAN device is gone.
func (a *AllowList) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conn.DelTable(a.table)
	err := a.conn.Flush()
	if errors.Is(err, unix.ENOENT) {
		err = nil
	}
	return errors.Join(err, a.conn.CloseLasting())
}

// RemoveAllowList removes bridge's allow-list table if there is one: what
// weave reset and a daemon without a fast datapath do with the leftover of
// one that died.
func RemoveAllowList(bridge string) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("fastdp allow-list: nftables netlink: %w", err)
	}
	t := &nftables.Table{Name: AllowListTable(bridge), Family: nftables.TableFamilyINet}
	conn.AddTable(t)
	conn.DelTable(t)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("fastdp allow-list: remove table inet %s: %w", t.Name, err)
	}
	return nil
}
