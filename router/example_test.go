package router_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"weavenet/gossip"
	"weavenet/router"
	"weavenet/tun"
)

// Two nodes in one process, on the loopback address and ports the system
// picks: the second names the first as its peer, and each hears the other
// come up.
func ExampleNewNode() {
	ctx := context.Background()
	a, err := router.NewNode(router.NodeConfig{
		Host:     netip.MustParseAddr("127.0.0.1"),
		Port:     router.AnyPort,
		NickName: "a",
		Password: []byte("s3cret"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	events := a.Subscribe(ctx)
	if err := a.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}

	b, err := router.NewNode(router.NodeConfig{
		Host:     netip.MustParseAddr("127.0.0.1"),
		Port:     router.AnyPort,
		NickName: "b",
		Password: []byte("s3cret"),
		Peers:    []string{a.Addr().String()},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	if err := b.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}

	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Kind == router.PeerUp {
				fmt.Println("a sees", e.NickName, "up")
				for _, c := range a.Status().Router.Connections {
					fmt.Println("connection:", c.State, "encrypted:", c.Encrypted)
				}
				return
			}
		case <-timeout:
			fmt.Println("timed out")
			return
		}
	}
	// Output:
	// a sees b up
	// connection: established encrypted: true
}

// NewNode checks the whole configuration before it starts anything, and
// names the field at fault.
func ExampleNewNode_errors() {
	_, err := router.NewNode(router.NodeConfig{MTU: -5})
	fmt.Println(err)
	_, err = router.NewNode(router.NodeConfig{PasswordFile: "/nonexistent/password"})
	fmt.Println(err)
	_, err = router.NewNode(router.NodeConfig{Peers: []string{"10.0.0.1", "10.0.0.2:http"}})
	fmt.Println(err)
	// Output:
	// router: NodeConfig.MTU -5: want 576-65000, or 0 for the default
	// router: NodeConfig.PasswordFile: open /nonexistent/password: no such file or directory
	// router: NodeConfig.Peers[1]: "10.0.0.2:http": port "http" is not a number from 1 to 65535
}

// Status is what `weave report` shows, as api.Report.
func ExampleNode_Status() {
	n, err := router.NewNode(router.NodeConfig{Host: netip.MustParseAddr("127.0.0.1"), Port: router.AnyPort, Password: []byte("s3cret")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()
	st := n.Status().Router
	fmt.Println("encryption:", st.Encryption, "discovery:", st.PeerDiscovery, "MTU:", st.MTU, "connections:", len(st.Connections))
	// Output:
	// encryption: true discovery: true MTU: 1376 connections: 0
}

// The bridge flavour: a TAP port on the host's Linux bridge is the node's
// Device, so everything on the bridge (containers' veths) is on the overlay.
// This needs root; it is what weaved does, minus IPAM and DNS.
func Example_bridge() {
	log := slog.Default()
	tap, err := tun.OpenTAP(tun.TAPConfig{Name: "vwtap-weave", Bridge: "weave", MTU: router.DefaultMTU, VnetHdr: true, Offload: true})
	if err != nil {
		log.Error("TAP", "err", err)
		return
	}
	node, err := router.NewNode(router.NodeConfig{
		Device:       tap,
		DataDir:      "/var/lib/weave", // keeps the generated peer name
		PasswordFile: "/etc/weave/password",
		Peers:        []string{"192.168.99.156"},
		Logger:       log,
	})
	if err != nil {
		log.Error("node", "err", err)
		return
	}
	defer node.Close()
	if err := node.Start(context.Background()); err != nil {
		log.Error("start", "err", err)
		return
	}
	log.Info("joined", "name", node.Name(), "listening", node.Addr())
}

// Without a Node: a Router joins a host's bridge to the mesh, with gossip's
// mesh peer as its control plane, and the Router is that peer's overlay.
// This is how weaved wires them, because its IPAM and DNS gossip on the
// same mesh and must register before it starts.
func Example_router() {
	log := slog.Default()
	tap, err := tun.OpenTAP(tun.TAPConfig{Name: "vwtap-weave", Bridge: "weave", MTU: router.DefaultMTU, VnetHdr: true, Offload: true})
	if err != nil {
		log.Error("TAP", "err", err)
		return
	}
	r, err := router.New(router.Config{Device: tap, Port: router.DefaultPort, Logger: log})
	if err != nil {
		log.Error("router", "err", err)
		return
	}
	defer r.Close()
	node, err := gossip.New(gossip.Config{
		DataDir:   "/var/lib/weave", // keeps the generated peer name
		Port:      router.DefaultPort,
		Password:  []byte("s3cret"), // seals control and data; peers without it are refused
		Discovery: true,
		Logger:    log,
	}, r)
	if err != nil {
		log.Error("gossip", "err", err)
		return
	}
	// Other gossipers (IPAM, DNS) register with node.Mesh.NewGossip here,
	// before the mesh starts.
	r.Start(node.Mesh)
	if err := node.Start([]string{"192.168.99.156"}); err != nil {
		log.Error("peers", "err", err)
		return
	}
	log.Info("joined", "name", node.Name.String(), "stats", r.Stats())
}
