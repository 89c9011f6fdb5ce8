package node

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"

	replica "github.com/raftrix/raftrixdb/range"
)

// syncWaiter waits for each Raft round's append batch to be durable and
// then delivers the round's append responses (range/ready.go), so that the
// Raft workers go on while the disk syncs. Rounds are waited for in the
// order they are handed over, and a worker hands its round over before it
// lets its ranges go, so each range's rounds arrive in order: a response is
// delivered only after its own batch and every batch handed over before it
// are durable, which is what Raft asks of an append that carries responses
// but wrote nothing itself (a follower acknowledging entries it already
// has). With several workers two rounds may arrive in the other order than
// their batches were committed; waiting for the later batch first is still
// right, as the write-ahead log syncs in commit order.
type syncWaiter struct {
	rounds chan appendWait
	done   chan struct{}
	// deliver hands a replica's responses to it and sends the rest.
	deliver func(r *replica.Replica, msgs []raftpb.Message)
	// synced records how long a batch took from commit to durable.
	synced func(time.Duration)
	fatal  func(error)
}

// appendWait is one round's appends: its batch, committed with a sync not
// yet waited for (nil if the round wrote nothing that needs one), and the
// responses to deliver after.
type appendWait struct {
	batch      *pebble.Batch
	start      time.Time
	deliveries []delivery
}

type delivery struct {
	r    *replica.Replica
	msgs []raftpb.Message
}

// maxRoundsInSync bounds the rounds whose sync is awaited: a worker that
// gets this far ahead of the disk waits.
const maxRoundsInSync = 64

func newSyncWaiter(deliver func(*replica.Replica, []raftpb.Message), synced func(time.Duration), fatal func(error)) *syncWaiter {
	s := &syncWaiter{
		rounds:  make(chan appendWait, maxRoundsInSync),
		done:    make(chan struct{}),
		deliver: deliver,
		synced:  synced,
		fatal:   fatal,
	}
	go s.run()
	return s
}

// wait hands over a round, after its batch has been committed.
func (s *syncWaiter) wait(w appendWait) { s.rounds <- w }

// stop waits for every round handed over, then returns. No round may be
// handed over after it is called.
func (s *syncWaiter) stop() {
	close(s.rounds)
	<-s.done
}

func (s *syncWaiter) run() {
	defer close(s.done)
	for w := range s.rounds {
		if w.batch != nil {
			err := w.batch.SyncWait()
			s.synced(time.Since(w.start))
			if err != nil {
				// The batch is not durable; continuing could acknowledge it.
				s.fatal(fmt.Errorf("sync raft batch: %w", err))
			}
			w.batch.Close()
		}
		for _, d := range w.deliveries {
			s.deliver(d.r, d.msgs)
		}
	}
}
