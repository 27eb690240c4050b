package netstack_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"

	"weavenet/netstack"
	"weavenet/router"
)

// Two programs, each with its own userspace stack on the overlay (here two
// nodes in one process on the loopback address): one serves HTTP at its
// overlay address, the other fetches the page through its stack. No root,
// no kernel device.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// join makes a stack at addr and a node that carries it.
	join := func(addr string, peers ...string) (*router.Node, *netstack.Stack, error) {
		st, err := netstack.New(netstack.Config{Addr: netip.MustParsePrefix(addr)})
		if err != nil {
			return nil, nil, err
		}
		node, err := router.NewNode(router.NodeConfig{
			Device:   st,
			Host:     netip.MustParseAddr("127.0.0.1"),
			Port:     router.AnyPort, // a real program keeps the default, 6783
			Password: []byte("s3cret"),
			Peers:    peers,
		})
		if err != nil {
			return nil, nil, err // NewNode closed the stack
		}
		if err := node.Start(ctx); err != nil {
			node.Close()
			return nil, nil, err
		}
		return node, st, nil
	}

	server, serverStack, err := join("10.40.0.1/16")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer server.Close()
	ln, err := serverStack.Listen("tcp", ":80")
	if err != nil {
		fmt.Println(err)
		return
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { //nolint:errcheck
		fmt.Fprintln(w, "hello over the overlay")
	}))

	client, clientStack, err := join("10.40.0.2/16", server.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	web := &http.Client{Transport: &http.Transport{DialContext: clientStack.DialContext}}
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://10.40.0.1/", nil)
		resp, err := web.Do(req)
		if err != nil {
			time.Sleep(200 * time.Millisecond) // still connecting
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Print(string(body))
		return
	}
	// Output: hello over the overlay
}
