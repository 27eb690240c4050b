package router_test

import (
	"log/slog"

	"weavenet/gossip"
	"weavenet/router"
	"weavenet/tun"
)

// A router joins a host's bridge to the mesh: a TAP port on the bridge is its
// Device, gossip's mesh peer is its control plane, and the Router is that
// peer's overlay. This is what weaved does; an embedding program does the
// same, with its own logger and ports. Two routers can live in one process
// as long as they listen on different ports.
func Example() {
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
