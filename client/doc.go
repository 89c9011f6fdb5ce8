// Package client is the Go client of RaftrixDB.
//
//	db, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7001"}})
//	if err != nil { ... }
//	defer db.Close()
//	_, err = db.Put(ctx, []byte("k"), []byte("v"))
//	err = db.Txn(ctx, func(tx *client.Txn) error {
//		v, _, err := tx.Get(ctx, []byte("balance"))
//		...
//		tx.Put([]byte("balance"), next)
//		return nil
//	})
//
// Any node accepts any request and forwards it to the leader of the key's
// range, but the client saves that hop: it keeps a cache of range
// descriptors and their leaders (filled by the placement service's Lookup on
// a miss) and sends Get, Put and Delete straight to the leader's address,
// over connections made on first use and shared. The configured endpoints
// are seeds: lookups go to them, and so does any request whose leader is
// unknown or unreachable (the node forwards it). Every answer corrects the
// cache: a response header names the node and range that served the
// request, and a RoutingError (not leader, wrong range, no leader) carries
// the leader and, after a split or a replica change, the new descriptor.
// Scans go to the leader of the range they start in, which forwards the rest
// range by range; a transaction within one range goes to its leader, others
// to the seeds in turn.
//
// Get, Put and Delete requests that many goroutines send to the same node at
// once travel together in one KV.Batch call, each still its own operation
// with its own result (batch.go): a busy client pays one RPC for many
// requests, a lone caller sees plain calls.
//
// Retries never apply a write twice. A request is sent only on a connection
// that is up, so one that could not be sent goes elsewhere, write or not.
// Once sent, a read is retried on any Unavailable answer, a write only when
// the node refused it before doing anything (a RoutingError detail). Retries
// back off with jitter, and all of a call's tries share Config.RequestTimeout
// (or the caller's deadline).
//
// Interactive transactions (Txn) read through the cluster, buffer their
// writes, and commit with one multi-range transaction that compares every
// key read against the mod revision it had when read. If any changed, the
// closure runs again with backoff. That gives strict serializability with no
// server-side transaction state beyond the commit itself.
package client
