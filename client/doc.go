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
// range. The client spreads requests over its endpoints and retries a
// request on another endpoint only when that cannot apply it twice: reads on
// any Unavailable answer, writes only when the node refused before doing
// anything (a RoutingError detail) or the connection never came up.
//
// Interactive transactions (Txn) read through the cluster, buffer their
// writes, and commit with one multi-range transaction that compares every
// key read against the mod revision it had when read. If any changed, the
// closure runs again with backoff. That gives strict serializability with no
// server-side transaction state beyond the commit itself.
package client
