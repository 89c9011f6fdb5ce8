package bench

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// Keys placed in chosen ranges, for the txn workload.
//
// `raftrix start --ranges R` (and `raftrix demo`) bootstraps R user ranges
// that split the key space evenly by the first two key bytes: with
// start(r) = r*65536/R, range r (counting from 0) holds the keys whose
// big-endian 2-byte prefix p has start(r) <= p < start(r+1), and the last
// user range ends at 0xFF 0xFF, where the system range begins
// (node.InitialDescriptors). The txn workload's key i belongs to range
// i mod R:
//
//	[prefix in range (i mod R)]["txn-"][i, zero-padded decimal]
//
// where the prefix is start(r) plus a Fibonacci hash of i/R scaled to the
// range's width, so a range's keys spread over its whole span and stay
// spread if the range is split later. A transaction that wants its K keys
// in N ranges picks N distinct ranges, then K distinct keys round-robin
// over them.
//
// The layout only knows R: it is right for a freshly bootstrapped cluster
// of R ranges (the command checks a raftrix cluster's ranges and warns when
// they differ). etcd has no ranges; it gets the same keys.

// txnKeyTag and bankKeyTag tag the txn and bank workloads' keys, so that
// neither overwrites another workload's keys on a shared cluster.
const (
	txnKeyTag  = "txn-"
	bankKeyTag = "acct"
)

// maxRanges is the most initial ranges the layout can address: every user
// range needs at least one 2-byte prefix below the system range's 0xFFFF.
const maxRanges = 0xFFFF

// rangeLayout places key indices in the evenly split initial ranges.
type rangeLayout struct {
	ranges int
}

// rangeStart is the first 2-byte prefix of range r; rangeStart(ranges) is
// the system range's 0xFFFF, the end of the last user range.
func (l rangeLayout) rangeStart(r int) uint32 {
	if r >= l.ranges {
		return maxKeyPrefix + 1
	}
	return uint32(r) * (1 << 16) / uint32(l.ranges)
}

// rangeOf is the range of key index i.
func (l rangeLayout) rangeOf(i uint64) int { return int(i % uint64(l.ranges)) }

// prefix returns the 2-byte prefix of key index i: inside range(i).
func (l rangeLayout) prefix(i uint64) uint16 {
	r := l.rangeOf(i)
	lo, hi := l.rangeStart(r), l.rangeStart(r+1)
	h := ((i / uint64(l.ranges)) * fibHash) >> 32 // 32 well-mixed bits
	return uint16(lo + uint32((h*uint64(hi-lo))>>32))
}

// keysIn is the number of indices in 0..keys-1 that belong to range r.
func (l rangeLayout) keysIn(r int, keys uint64) uint64 {
	if uint64(r) >= keys {
		return 0
	}
	return (keys-uint64(r)-1)/uint64(l.ranges) + 1
}

// index is the j-th key index (from 0) of range r.
func (l rangeLayout) index(r int, j uint64) uint64 { return j*uint64(l.ranges) + uint64(r) }

// pickTxnKeys appends to dst k distinct key indices below keys spread over
// n distinct ranges chosen uniformly: key j goes to the (j mod n)-th range
// chosen. The caller has checked that every range holds at least
// ceil(k/n) keys (checkTxnShape).
func (l rangeLayout) pickTxnKeys(dst []uint64, rng *rand.Rand, k, n int, keys uint64) []uint64 {
	var chosen [maxKeysPerTxn]int
	for c := 0; c < n; {
		if r := rng.IntN(l.ranges); !slices.Contains(chosen[:c], r) {
			chosen[c] = r
			c++
		}
	}
	start := len(dst)
	for j := 0; j < k; {
		r := chosen[j%n]
		if i := l.index(r, rng.Uint64N(l.keysIn(r, keys))); !slices.Contains(dst[start:], i) {
			dst = append(dst, i)
			j++
		}
	}
	return dst
}

// maxKeysPerTxn bounds --keys-per-txn: a transaction of K keys is 4K
// compares and operations (K compares; K gets and K puts on success; K gets
// on failure), and RaftrixDB allows 128 by default.
const maxKeysPerTxn = 32

// checkTxnShape checks the txn workload's --keys-per-txn k,
// --ranges-per-txn n and --ranges against the key space.
func checkTxnShape(k, n, ranges int, keys uint64) error {
	switch {
	case k < 1 || k > maxKeysPerTxn:
		return fmt.Errorf("--keys-per-txn must be in [1, %d], got %d", maxKeysPerTxn, k)
	case n < 1 || n > k:
		return fmt.Errorf("--ranges-per-txn must be in [1, --keys-per-txn %d], got %d", k, n)
	case ranges < 1 || ranges > maxRanges:
		return fmt.Errorf("--ranges must be in [1, %d], got %d", maxRanges, ranges)
	case n > ranges:
		return fmt.Errorf("--ranges-per-txn %d is more than the cluster's --ranges %d", n, ranges)
	}
	perRange := uint64((k + n - 1) / n)
	if keys/uint64(ranges) < perRange {
		return fmt.Errorf("--keys %d gives some of the %d ranges fewer than the %d keys a transaction puts in one range: use at least %d keys",
			keys, ranges, perRange, perRange*uint64(ranges))
	}
	return nil
}
