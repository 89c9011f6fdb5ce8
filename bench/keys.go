package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// Key encoding. See the package doc for why keys start with a hash.

const (
	keyPrefixLen = 2
	keyTag       = "user"
	// minKeySize leaves room for the prefix, the tag and one digit.
	minKeySize = keyPrefixLen + len(keyTag) + 1
)

// fibHash is 2^64/φ: multiplying by it scatters consecutive integers evenly
// over the 64-bit space (Fibonacci hashing).
const fibHash = 11400714819323198485

// maxKeyPrefix is the largest prefix a benchmark key may have: RaftrixDB
// reserves keys starting with 0xFF 0xFF for its system range and refuses
// them to clients.
const maxKeyPrefix = 0xFFFE

// keyPrefix returns the two leading bytes of key i, spread uniformly over
// 0..maxKeyPrefix. One hash in 65536 would land on the reserved 0xFFFF
// (the first is i = 46368); those keys take 0xFFFE instead, still unique by
// their index digits.
func keyPrefix(i uint64) uint16 { return min(uint16((i*fibHash)>>48), maxKeyPrefix) }

// appendKey appends key i of the kv and ycsb workloads, keySize bytes
// long, to dst. An index with more digits than keySize leaves room for
// makes a longer key rather than a wrong one; checkKeySpace refuses a
// starting key space that would.
func appendKey(dst []byte, i uint64, keySize int) []byte {
	return appendTaggedKey(dst, keyPrefix(i), keyTag, i, keySize)
}

// appendTaggedKey appends [prefix][tag][i, zero-padded] to dst, keySize
// bytes long when i fits. Every tag is len(keyTag) bytes, so all workloads
// share checkKeySpace; workloads use different tags so that their keys
// never collide on one cluster.
func appendTaggedKey(dst []byte, p uint16, tag string, i uint64, keySize int) []byte {
	dst = append(dst, byte(p>>8), byte(p))
	dst = append(dst, tag...)
	width := keySize - keyPrefixLen - len(keyTag)
	var digits [20]byte
	n := len(digits)
	for v := i; ; v /= 10 {
		n--
		digits[n] = byte('0' + v%10)
		if v < 10 {
			break
		}
	}
	for pad := width - (len(digits) - n); pad > 0; pad-- {
		dst = append(dst, '0')
	}
	return append(dst, digits[n:]...)
}

// checkKeySpace says whether keys 0..keys-1 fit in keySize bytes.
func checkKeySpace(keys uint64, keySize int) error {
	if keySize < minKeySize {
		return fmt.Errorf("--key-size must be at least %d, got %d", minKeySize, keySize)
	}
	if keys == 0 {
		return fmt.Errorf("--keys must be at least 1")
	}
	width := keySize - keyPrefixLen - len(keyTag)
	if width < 20 && float64(keys-1) >= math.Pow10(width) {
		return fmt.Errorf("--keys %d needs more than %d digits: raise --key-size above %d", keys, width, keySize)
	}
	return nil
}

// keySpace is the set of keys a run touches: 0..base-1 exist from the load,
// inserts add base, base+1, … Shared by all workers.
type keySpace struct {
	base uint64
	next atomic.Uint64 // the next index to insert
	seq  atomic.Uint64 // the sequential distribution's cursor
	// limit is one past the last key of the prefix of keys whose inserts
	// have all finished; reads choose below it, as with YCSB's
	// AcknowledgedCounterGenerator, so they do not ask for a key whose
	// insert is still in flight.
	limit atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]bool // finished inserts above limit; guarded by mu
}

func newKeySpace(base uint64) *keySpace {
	ks := &keySpace{base: base, pending: map[uint64]bool{}}
	ks.next.Store(base)
	ks.limit.Store(base)
	return ks
}

// count is the number of keys that reads choose from: 0..count-1.
func (ks *keySpace) count() uint64 { return ks.limit.Load() }

// insert claims the next new key index. The caller must call finished with
// it once the insert returns, whether or not it succeeded (a failed insert
// can make a later read miss, but must not stall the key space).
func (ks *keySpace) insert() uint64 { return ks.next.Add(1) - 1 }

func (ks *keySpace) finished(i uint64) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.pending[i] = true
	limit := ks.limit.Load()
	for ks.pending[limit] {
		delete(ks.pending, limit)
		limit++
	}
	ks.limit.Store(limit)
}

// Key distributions.
const (
	distUniform    = "uniform"
	distZipfian    = "zipfian"
	distSequential = "sequential"
	// distLatest favours the most recently inserted keys (YCSB D).
	distLatest = "latest"
)

// chooser picks the index of the next key to touch. Each worker has its
// own; a chooser is not safe for concurrent use.
type chooser interface {
	next() uint64
}

// newChooser returns a chooser for dist over ks. zipf is shared, read-only
// state (its setup is O(keys)); it may be nil for the other distributions.
func newChooser(dist string, ks *keySpace, zipf *zipfParams, rng *rand.Rand) (chooser, error) {
	switch dist {
	case distUniform:
		return &uniformChooser{ks: ks, rng: rng}, nil
	case distZipfian:
		return &zipfChooser{z: zipf, rng: rng}, nil
	case distSequential:
		return &seqChooser{ks: ks}, nil
	case distLatest:
		return &latestChooser{ks: ks, z: zipf, rng: rng}, nil
	}
	return nil, fmt.Errorf("unknown key distribution %q (want uniform, zipfian, sequential or latest)", dist)
}

// uniformChooser picks any existing key with equal probability.
type uniformChooser struct {
	ks  *keySpace
	rng *rand.Rand
}

func (c *uniformChooser) next() uint64 { return c.rng.Uint64N(c.ks.count()) }

// seqChooser walks the key space in index order, all workers together,
// wrapping around at the end.
type seqChooser struct{ ks *keySpace }

func (c *seqChooser) next() uint64 { return (c.ks.seq.Add(1) - 1) % c.ks.count() }

// zipfChooser picks key i with probability proportional to 1/(i+1)^θ over
// the loaded keys: key 0 is the hottest. Keys inserted during the run are
// not chosen, as in YCSB's zipfian over the initial record count.
type zipfChooser struct {
	z   *zipfParams
	rng *rand.Rand
}

func (c *zipfChooser) next() uint64 { return c.z.sample(c.rng.Float64()) }

// latestChooser picks the newest key most often: newest minus a zipfian
// offset over the loaded key count, which approximates YCSB's
// SkewedLatestGenerator (whose zipfian grows with the key space) closely,
// since nearly all of a θ=0.99 zipfian's mass is on small offsets.
type latestChooser struct {
	ks  *keySpace
	z   *zipfParams
	rng *rand.Rand
}

func (c *latestChooser) next() uint64 {
	n := c.ks.count()
	off := c.z.sample(c.rng.Float64())
	if off >= n {
		off = n - 1
	}
	return n - 1 - off
}

// zipfianTheta is YCSB's zipfian constant.
const zipfianTheta = 0.99

// zipfParams is the precomputed state of YCSB's zipfian generator (Gray et
// al., "Quickly generating billion-record synthetic databases", SIGMOD '94)
// over 0..n-1. It is read-only once built, so workers share it.
type zipfParams struct {
	n                       uint64
	theta, alpha, zetan     float64
	eta, oneAndHalfPowTheta float64
}

func newZipfParams(n uint64, theta float64) *zipfParams {
	zetan := zeta(n, theta)
	zeta2 := zeta(2, theta)
	return &zipfParams{
		n:                  n,
		theta:              theta,
		alpha:              1 / (1 - theta),
		zetan:              zetan,
		eta:                (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta2/zetan),
		oneAndHalfPowTheta: 1 + math.Pow(0.5, theta),
	}
}

// zeta is sum_{i=1..n} 1/i^theta.
func zeta(n uint64, theta float64) float64 {
	var sum float64
	for i := uint64(1); i <= n; i++ {
		sum += 1 / math.Pow(float64(i), theta)
	}
	return sum
}

// sample maps u, uniform in [0,1), to a zipfian index in 0..n-1.
func (z *zipfParams) sample(u float64) uint64 {
	uz := u * z.zetan
	switch {
	case uz < 1:
		return 0
	case uz < z.oneAndHalfPowTheta:
		return 1
	}
	v := uint64(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	if v >= z.n {
		v = z.n - 1
	}
	return v
}

// valuePool hands out deterministic pseudo-random values: windows of one
// buffer filled from the seed. Values are read-only.
type valuePool struct {
	buf  []byte
	size int
}

// valuePoolSpan is how many distinct value start offsets the pool has.
const valuePoolSpan = 64 << 10

func newValuePool(size int, seed uint64) *valuePool {
	rng := rand.New(rand.NewPCG(seed, 0x76616c756573)) // "values"
	buf := make([]byte, size+valuePoolSpan)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	return &valuePool{buf: buf, size: size}
}

// value returns a value of the pool's size chosen by rng.
func (p *valuePool) value(rng *rand.Rand) []byte {
	off := rng.IntN(valuePoolSpan)
	return p.buf[off : off+p.size : off+p.size]
}
