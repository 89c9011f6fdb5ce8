package main

import (
	"cmp"
	"net"
	"strconv"

	"github.com/raftrix/raftrixdb/node"
)

// httpPortOffset puts a node's HTTP endpoint beside its gRPC port when
// --http-addr is not given: 7001 -> 8001.
const httpPortOffset = 1000

// defaultHTTPAddr turns the --http-addr flag into node.Config.HTTPAddr: ""
// derives it from the gRPC listen address (loopback, port + 1000), "off"
// disables the endpoint, anything else must be HOST:PORT.
func defaultHTTPAddr(flag, listen string) (string, error) {
	switch flag {
	case "off":
		return "", nil
	case "":
		_, portStr, err := net.SplitHostPort(listen)
		if err != nil {
			return "", usagef("invalid --listen %q: %v", listen, err)
		}
		port, err := strconv.Atoi(portStr)
		if err == nil && port == 0 {
			return "127.0.0.1:0", nil // a free port, as for gRPC
		}
		if err != nil || port+httpPortOffset > 65535 {
			return "", usagef("cannot derive --http-addr from gRPC port %q: give --http-addr HOST:PORT or off", portStr)
		}
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(port+httpPortOffset)), nil
	}
	if _, _, err := net.SplitHostPort(flag); err != nil {
		return "", usagef("invalid --http-addr %q: %v (HOST:PORT, or off)", flag, err)
	}
	return flag, nil
}

// demoHTTPListener listens for a demo node's HTTP endpoint on its gRPC
// port + 1000, or on any free port when that one is taken: a demo must not
// fail for want of its metrics port (nodeHTTPAddrs tells where it landed).
// Nil, no endpoint, only if the loopback has no port at all.
func demoHTTPListener(grpcPort int) net.Listener {
	if p := grpcPort + httpPortOffset; p <= 65535 {
		if lis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			return lis
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil
	}
	return lis
}

// nodeHTTPAddrs returns the HTTP endpoint of each node ("none" if it has none).
func nodeHTTPAddrs(nodes []*node.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = cmp.Or(n.HTTPAddr(), "none")
	}
	return out
}
