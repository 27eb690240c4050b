package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runHTTPGet fetches a URL and prints the body: for reading a daemon's
// loopback-only endpoints (metrics) from inside its namespace.
func runHTTPGet(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("http-get", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the answer")
	pos, err := parseFlags(fs, args, 1, usageHTTPGet)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: *timeout}
	resp, err := c.Get(pos[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", pos[0], resp.Status)
	}
	_, err = io.Copy(stdout, resp.Body)
	return err
}
