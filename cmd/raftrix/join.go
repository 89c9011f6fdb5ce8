package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/raftrix/raftrixdb/node"
)

// nodeIDFile keeps a joined node's ID in its data directory: the ID is
// handed out once, and a restart must not ask for a new one.
const nodeIDFile = "NODE_ID"

// joinTimeout bounds registering with the cluster.
const joinTimeout = time.Minute

// joinCluster fills cfg's node ID and peers for a node started with --join:
// from DATA-DIR/NODE_ID after a restart, otherwise by registering with the
// cluster through the node at --join.
func (f *startFlags) joinCluster(ctx context.Context, cfg *node.Config, log *slog.Logger) error {
	cfg.JoinAddr = f.join
	path := filepath.Join(f.dataDir, nodeIDFile)
	if data, err := os.ReadFile(path); err == nil {
		id, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		if err != nil || id == 0 {
			return fmt.Errorf("%s holds no node ID: %q", path, data)
		}
		cfg.NodeID = id
		cfg.Peers = map[uint64]string{id: cfg.ListenAddr}
		log.Info("rejoining with the ID in the data directory", "node", id)
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if f.id != 0 {
		// Registered beforehand ('raftrix cluster join'): heartbeats through
		// --join teach it the peers.
		cfg.NodeID = f.id
		cfg.Peers = map[uint64]string{f.id: cfg.ListenAddr}
		return writeNodeID(path, f.dataDir, f.id)
	}
	creds, err := f.security.joinCredentials()
	if err != nil {
		return err
	}
	jctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	id, peers, err := node.JoinCluster(jctx, f.join, cfg.ListenAddr, creds)
	if err != nil {
		return &codedError{code: exitUnavailable, msg: err.Error()}
	}
	if err := writeNodeID(path, f.dataDir, id); err != nil {
		return err
	}
	cfg.NodeID, cfg.Peers = id, peers
	log.Info("joined the cluster", "node", id, "via", f.join)
	return nil
}

func writeNodeID(path, dir string, id uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(strconv.FormatUint(id, 10)+"\n"), 0o644); err != nil {
		return fmt.Errorf("record node ID %d: %w", id, err)
	}
	return nil
}
