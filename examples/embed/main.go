// Command embed is a program that carries its own overlay network: it embeds
// a weavenet router with a userspace network stack, so it needs no root, no
// daemon and no kernel device, and serves HTTP to its peers at its overlay
// address. Run one per machine:
//
//	embed -addr 10.40.0.1/16 -password s3cret
//	embed -addr 10.40.0.2/16 -password s3cret -peer 192.168.1.10
//	embed -addr 10.40.0.3/16 -password s3cret -peer 192.168.1.10 -fetch http://10.40.0.2/
//
// -fetch gets a page from a peer over the overlay, prints it and exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"weavenet/netstack"
	"weavenet/router"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run() error {
	var peers []string
	flag.Func("peer", "a peer to connect to, HOST[:PORT] (repeatable)", func(s string) error { peers = append(peers, s); return nil })
	port := flag.Int("port", router.DefaultPort, "TCP and UDP port of the overlay on the host")
	password := flag.String("password", os.Getenv("WEAVE_PASSWORD"), "encrypt and admit only peers with this password (default $WEAVE_PASSWORD)")
	passwordFile := flag.String("password-file", "", "read the password from this file")
	addr := flag.String("addr", "", "this program's overlay address and subnet, e.g. 10.40.0.1/16 (required)")
	httpPort := flag.Int("http-port", 80, "port of the HTTP server on the overlay address")
	fetch := flag.String("fetch", "", "get this URL over the overlay, print it and exit")
	flag.Parse()
	peers = append(peers, flag.Args()...)

	overlay, err := netip.ParsePrefix(*addr)
	if err != nil {
		return fmt.Errorf("-addr %q: want an address with its subnet, such as 10.40.0.1/16", *addr)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	stack, err := netstack.New(netstack.Config{Addr: overlay, Logger: log})
	if err != nil {
		return err
	}
	node, err := router.NewNode(router.NodeConfig{
		Device: stack, Port: *port, Peers: peers,
		Password: []byte(*password), PasswordFile: *passwordFile, Logger: log,
	})
	if err != nil {
		return err
	}
	defer node.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		for e := range node.Subscribe(ctx) {
			log.Info("overlay", "event", e.String())
		}
	}()
	if err := node.Start(ctx); err != nil {
		return err
	}

	ln, err := stack.Listen("tcp", fmt.Sprintf(":%d", *httpPort))
	if err != nil {
		return fmt.Errorf("-http-port %d: %w", *httpPort, err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s (%s) at %v, to %s\n", node.NickName(), node.Name(), overlay.Addr(), r.RemoteAddr)
	})}
	go srv.Serve(ln) //nolint:errcheck // ends with the stack
	log.Info("serving HTTP on the overlay", "url", fmt.Sprintf("http://%v:%d/", overlay.Addr(), *httpPort), "listen", node.Addr())

	if *fetch != "" {
		return get(ctx, stack, *fetch)
	}
	select {
	case <-ctx.Done():
		return nil
	case <-node.Failed(): // its device failed for good
		return node.Err()
	}
}

// get fetches url over the overlay and prints the body, trying again for a
// while: the peers may still be connecting.
func get(ctx context.Context, stack *netstack.Stack, url string) error {
	client := &http.Client{Transport: &http.Transport{DialContext: stack.DialContext}, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		err := func() error {
			resp, err := client.Get(url)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return errors.New(resp.Status)
			}
			_, err = io.Copy(os.Stdout, resp.Body)
			return err
		}()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("-fetch %s: %w", url, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
