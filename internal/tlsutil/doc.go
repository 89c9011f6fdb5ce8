// Package tlsutil creates and loads the certificates of a RaftrixDB cluster
// and tells a node's identity from a client's.
//
// One directory (the certs dir) holds a cluster's files:
//
//	ca.crt             the cluster CA certificate (may hold several CAs, for rotation)
//	ca.key             the CA key; needed only to create certificates, keep it off the nodes
//	node.<ID>.crt/key  node ID's certificate: server and client, Subject OU=node, CN=node.<ID>
//	node.crt/key       a certificate for any node (CN=node), used by a node without
//	                   a node.<ID> pair, e.g. one that joins and learns its ID then
//	client.crt/key     a client's certificate: client only, Subject OU=client, CN=<name>
//
// Keys are ECDSA P-256 in PKCS #8 PEM files of mode 0600. A node presents
// its certificate both as a server (gRPC) and as a client (to its peers);
// its subject alternative names are the hosts its peers and clients dial.
//
// Identity is the certificate's Subject OU, once the chain has been
// verified against the cluster CA: "node" for nodes, "client" for clients
// (IdentityOf). The node's gRPC layer (node/tls.go) lets only nodes use the
// peer plane (Raft, Internal, Placement's JoinCluster and Heartbeat); nodes
// and clients may use KV, Admin and the rest of Placement.
//
// Usage:
//
//	tlsutil.CreateCA(dir, tlsutil.DefaultCALifetime)
//	tlsutil.CreateNode(dir, 1, []string{"127.0.0.1", "node1"}, tlsutil.DefaultCertLifetime)
//	tlsutil.CreateClient(dir, "alice", tlsutil.DefaultCertLifetime)
//	nodeTLS, err := tlsutil.LoadNode(dir, 1)   // Server and Peer tls.Configs
//	clientTLS, err := tlsutil.LoadClient(dir)  // for the CLI and Go clients
package tlsutil
