package main

import (
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const usageMeshFlood = "mesh-flood [-frame B] [-silent] [-hold D] [-max-version V] ADDR:PORT N"

func init() {
	commands["mesh-flood"] = command{usageMeshFlood, runMeshFlood}
}

// runMeshFlood opens N connections to a mesh port at once. Each sends the
// protocol header, an encrypted-connection flag and a random public key,
// then announces a handshake frame of -frame bytes and sends them (or, with
// -silent, sends nothing at all); each stays open until the peer closes it
// or -hold passes. -max-version is the highest protocol version offered: 3
// poses as a weavenet peer, 2 as a Weave Net one. It prints how many connected, how many the peer closed
// and how many bytes were sent.
func runMeshFlood(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mesh-flood", flag.ContinueOnError)
	fs.SetOutput(stderr)
	frame := fs.Int("frame", 10<<20, "announced and sent handshake frame `bytes`")
	silent := fs.Bool("silent", false, "send nothing")
	hold := fs.Duration("hold", 30*time.Second, "keep each connection open this long at most")
	maxVersion := fs.Int("max-version", 3, "highest protocol `version` offered (2 or 3)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *maxVersion < 2 || *maxVersion > 255 {
		return fmt.Errorf("-max-version %d: want 2 or more", *maxVersion)
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("usage: %s", usageMeshFlood)
	}
	addr := fs.Arg(0)
	n, err := strconv.Atoi(fs.Arg(1))
	if err != nil || n < 1 || n > 10000 {
		return fmt.Errorf("connection count %q: want 1-10000", fs.Arg(1))
	}
	var connected, closedByPeer, failed atomic.Int64
	var sent atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(*hold)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			failed.Add(1)
			continue
		}
		connected.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			_ = c.SetDeadline(deadline)
			if !*silent {
				msg := []byte{'w', 'e', 'a', 'v', 'e', 1, byte(*maxVersion), 1}
				key := make([]byte, 32)
				_, _ = rand.Read(key)
				msg = append(msg, key...)
				msg = binary.BigEndian.AppendUint32(msg, uint32(*frame))
				chunk := make([]byte, 64<<10)
				k, err := c.Write(msg)
				sent.Add(int64(k))
				for left := *frame; err == nil && left > 0; left -= len(chunk) {
					k, err = c.Write(chunk[:min(left, len(chunk))])
					sent.Add(int64(k))
				}
			}
			// Wait for the peer to hang up, or the hold to pass.
			if _, err := io.Copy(io.Discard, c); err == nil || !isTimeout(err) {
				closedByPeer.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(stdout, "connected %d closed-by-peer %d failed %d sent %d\n", connected.Load(), closedByPeer.Load(), failed.Load(), sent.Load())
	if connected.Load() == 0 {
		return fmt.Errorf("no connection to %s", addr)
	}
	return nil
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
