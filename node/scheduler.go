package node

import "sync"

// The Raft scheduler runs a fixed pool of workers over the ranges that have
// work, so a node with thousands of ranges has no goroutine or timer per
// range. A range is in the queue at most once and processed by at most one
// worker at a time; work that arrives while it is being processed is
// remembered in its flags and requeues it afterwards.

type schedFlags uint8

const (
	flagQueued schedFlags = 1 << iota
	flagProcessing
	flagTick  // advance the range's Raft clock
	flagReady // the range may have a Ready to handle
)

const workFlags = flagTick | flagReady

// scheduledRange is one unit of work handed to the processing function.
type scheduledRange struct {
	rangeID uint64
	flags   schedFlags
}

// maxRangesPerBatch bounds how many ranges one worker takes at once; a batch
// shares one synced engine write (group commit).
const maxRangesPerBatch = 128

type scheduler struct {
	process func([]scheduledRange)
	workers int
	wg      sync.WaitGroup

	mu struct {
		sync.Mutex
		cond    *sync.Cond // signalled when a range is queued
		idle    *sync.Cond // broadcast when a worker finishes a batch
		queue   []uint64
		flags   map[uint64]schedFlags
		stopped bool
	}
}

func newScheduler(workers int, process func([]scheduledRange)) *scheduler {
	s := &scheduler{process: process, workers: workers}
	s.mu.cond = sync.NewCond(&s.mu.Mutex)
	s.mu.idle = sync.NewCond(&s.mu.Mutex)
	s.mu.flags = make(map[uint64]schedFlags)
	return s
}

func (s *scheduler) start() {
	for i := 0; i < s.workers; i++ {
		s.wg.Add(1)
		go s.worker()
	}
}

// stop makes the workers exit after their current batch and waits for them.
func (s *scheduler) stop() {
	s.mu.Lock()
	s.mu.stopped = true
	s.mu.cond.Broadcast()
	s.mu.Unlock()
	s.wg.Wait()
}

// enqueue records work for a range and queues it unless it is already queued
// or being processed.
func (s *scheduler) enqueue(rangeID uint64, f schedFlags) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enqueueLocked(rangeID, f)
}

// enqueueAll records the same work for many ranges (the node's ticker).
func (s *scheduler) enqueueAll(rangeIDs []uint64, f schedFlags) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range rangeIDs {
		s.enqueueLocked(id, f)
	}
}

func (s *scheduler) enqueueLocked(rangeID uint64, f schedFlags) {
	cur := s.mu.flags[rangeID]
	if cur&(flagQueued|flagProcessing) == 0 {
		cur |= flagQueued
		s.mu.queue = append(s.mu.queue, rangeID)
		s.mu.cond.Signal()
	}
	s.mu.flags[rangeID] = cur | f
}

func (s *scheduler) worker() {
	defer s.wg.Done()
	var batch []scheduledRange
	for {
		s.mu.Lock()
		for len(s.mu.queue) == 0 && !s.mu.stopped {
			s.mu.cond.Wait()
		}
		if s.mu.stopped {
			s.mu.Unlock()
			return
		}
		// Share the queue among the workers, but let a busy worker take many
		// ranges so their Readies go into one synced write.
		n := min((len(s.mu.queue)+s.workers-1)/s.workers, maxRangesPerBatch)
		batch = batch[:0]
		for _, id := range s.mu.queue[:n] {
			f := s.mu.flags[id]
			batch = append(batch, scheduledRange{rangeID: id, flags: f & workFlags})
			s.mu.flags[id] = flagProcessing
		}
		s.mu.queue = append(s.mu.queue[:0], s.mu.queue[n:]...)
		s.mu.Unlock()

		s.process(batch)

		s.mu.Lock()
		for _, sr := range batch {
			f := s.mu.flags[sr.rangeID] &^ flagProcessing
			if f&workFlags != 0 {
				f |= flagQueued
				s.mu.queue = append(s.mu.queue, sr.rangeID)
				s.mu.cond.Signal()
			}
			s.mu.flags[sr.rangeID] = f
		}
		s.mu.idle.Broadcast()
		s.mu.Unlock()
	}
}

// waitIdle returns once no worker is processing the range. A range taken out
// of the node's registry first is never processed again after that (a round
// skips ranges it cannot find), so the caller then owns the replica: it can
// close it and delete its data without a round's apply batch writing keys
// of the deleted replica back.
func (s *scheduler) waitIdle(rangeID uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A worker always finishes its batch and clears the flags, even when the
	// scheduler is stopping.
	for s.mu.flags[rangeID]&flagProcessing != 0 {
		s.mu.idle.Wait()
	}
}

// forget drops the scheduler's state of a removed range.
func (s *scheduler) forget(rangeID uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.flags[rangeID]&(flagQueued|flagProcessing) == 0 {
		delete(s.mu.flags, rangeID)
	}
}
