// Command healthcheck is the container HEALTHCHECK of the mailpipe images, which have no shell,
// curl or wget: it GETs /healthz on the admin port of the service in the same container and
// exits 0 on a 200, 1 otherwise. The admin address comes from MAILPIPE_ADMIN_ADDR (default
// :9090), like the service's; an address without a host is dialled on 127.0.0.1.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

const (
	defaultAdminAddr = ":9090"
	healthPath       = "/healthz"
	timeout          = 3 * time.Second
)

func main() {
	if err := check(os.Getenv("MAILPIPE_ADMIN_ADDR")); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// check probes the liveness endpoint of the admin server listening on addr.
func check(addr string) error {
	if addr == "" {
		addr = defaultAdminAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("MAILPIPE_ADMIN_ADDR %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + healthPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	status, code := resp.Status, resp.StatusCode
	if err := resp.Body.Close(); err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, status)
	}
	return nil
}
