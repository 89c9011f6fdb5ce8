package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
)

// opKind is one type of operation, reported separately.
type opKind int

const (
	opRead opKind = iota
	opUpdate
	opInsert
	opScan
	opRMW
	opTxn
	opTransfer
	numOps
)

var opNames = [numOps]string{"read", "update", "insert", "scan", "rmw", "txn", "transfer"}

func (k opKind) String() string { return opNames[k] }

// Spec is a workload: an operation mix over a key space. Proportions need
// not sum to 1; they are normalised.
type Spec struct {
	// Name identifies the workload in reports, e.g. "kv" or "ycsb-A".
	Name string
	// Proportions of reads (Get), updates (Put of an existing key), inserts
	// (Put of a new key), scans (a short ordered read from a chosen key) and
	// read-modify-writes (Get, then Put compared on the mod revision read),
	// multi-key transactions (workload_txn.go) and bank transfers
	// (workload_bank.go).
	Read, Update, Insert, Scan, RMW, Txn, Transfer float64
	// Dist picks keys: uniform, zipfian, sequential or latest.
	Dist string
	// Keys is the number of keys loaded before the run (indices 0..Keys-1).
	Keys uint64
	// KeySize and ValueSize are the sizes in bytes of every key and value.
	KeySize, ValueSize int
	// MaxScanLength bounds a scan's limit, drawn uniformly from
	// 1..MaxScanLength.
	MaxScanLength int
	// KeysPerTxn, RangesPerTxn and Ranges shape the txn workload: each
	// transaction touches KeysPerTxn keys spread over RangesPerTxn of the
	// cluster's Ranges initial ranges (see keys_ranges.go). A spec with
	// transactions uses range-placed keys for all its operations.
	KeysPerTxn, RangesPerTxn, Ranges int

	// revs is the txn workload's view of its keys' mod revisions, shared by
	// the Load and the Run of copies of one Spec (TxnSpec makes it).
	revs *revTable
}

// Validate reports the first problem with s, in terms of the command's flags.
func (s *Spec) Validate() error {
	if err := checkKeySpace(s.Keys, s.KeySize); err != nil {
		return err
	}
	if s.ValueSize < 0 {
		return fmt.Errorf("--value-size must not be negative, got %d", s.ValueSize)
	}
	sum := 0.0
	for _, p := range []float64{s.Read, s.Update, s.Insert, s.Scan, s.RMW, s.Txn, s.Transfer} {
		if p < 0 || math.IsNaN(p) {
			return fmt.Errorf("workload %s: operation proportions must not be negative", s.Name)
		}
		sum += p
	}
	if sum == 0 {
		return fmt.Errorf("workload %s has no operations", s.Name)
	}
	if s.Scan > 0 && s.MaxScanLength < 1 {
		return fmt.Errorf("--max-scan-length must be at least 1, got %d", s.MaxScanLength)
	}
	switch s.Dist {
	case distUniform, distZipfian, distSequential, distLatest:
	default:
		return fmt.Errorf("unknown key distribution %q (want uniform, zipfian, sequential or latest)", s.Dist)
	}
	if s.Txn > 0 {
		if err := s.validateTxn(); err != nil {
			return err
		}
	}
	if s.Transfer > 0 {
		return s.validateBank()
	}
	return nil
}

// needsTxn says whether the workload needs a TxnDriver.
func (s *Spec) needsTxn() bool { return s.Txn > 0 || s.Transfer > 0 }

// workload is a Spec made ready to run: the shared key space, the shared
// zipfian state and the value pool.
type workload struct {
	spec   Spec
	cum    [numOps]float64 // cumulative normalised proportions
	ks     *keySpace
	zipf   *zipfParams
	values *valuePool
	seed   uint64
	// appendKey appends key i of this workload: hashed "user" keys, "txn-"
	// keys placed in chosen ranges, or "acct" keys of the bank.
	appendKey func(dst []byte, i uint64) []byte
	layout    rangeLayout // txn workload only
	revs      *revTable   // txn workload only
}

func newWorkload(spec Spec, seed uint64) (*workload, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	w := &workload{spec: spec, ks: newKeySpace(spec.Keys), values: newValuePool(spec.ValueSize, seed), seed: seed}
	switch {
	case spec.Txn > 0:
		w.layout = rangeLayout{ranges: spec.Ranges}
		w.appendKey = func(dst []byte, i uint64) []byte {
			return appendTaggedKey(dst, w.layout.prefix(i), txnKeyTag, i, spec.KeySize)
		}
		w.revs = spec.revs
		if w.revs == nil {
			w.revs = newRevTable(spec.Keys)
		}
	case spec.Transfer > 0:
		w.appendKey = func(dst []byte, i uint64) []byte {
			return appendTaggedKey(dst, keyPrefix(i), bankKeyTag, i, spec.KeySize)
		}
	default:
		w.appendKey = func(dst []byte, i uint64) []byte { return appendKey(dst, i, spec.KeySize) }
	}
	props := [numOps]float64{opRead: spec.Read, opUpdate: spec.Update, opInsert: spec.Insert, opScan: spec.Scan, opRMW: spec.RMW,
		opTxn: spec.Txn, opTransfer: spec.Transfer}
	sum := 0.0
	for _, p := range props {
		sum += p
	}
	acc := 0.0
	for k, p := range props {
		acc += p / sum
		w.cum[k] = acc
	}
	w.cum[numOps-1] = 1
	if spec.Dist == distZipfian || spec.Dist == distLatest {
		w.zipf = newZipfParams(spec.Keys, zipfianTheta)
	}
	return w, nil
}

// outcome is how an operation that returned no error went.
type outcome int

const (
	outcomeOK outcome = iota
	// outcomeMiss: a read or read-modify-write found no key.
	outcomeMiss
	// outcomeConflict: a read-modify-write's compare-and-set, a
	// transaction's or a transfer's compares failed because a key changed
	// after it was read.
	outcomeConflict
)

// worker generates and runs one worker's operations. Not safe for
// concurrent use.
type worker struct {
	w      *workload
	rng    *rand.Rand
	choose chooser
	key    []byte // reused: drivers do not keep keys after returning
	// multi holds the keys, values and indices of a txn or transfer.
	multi multiKeyBuf
}

func (w *workload) newWorker(id int) *worker {
	rng := rand.New(rand.NewPCG(w.seed, uint64(id)+1))
	c, err := newChooser(w.spec.Dist, w.ks, w.zipf, rng)
	if err != nil {
		panic(err) // Validate checked the distribution
	}
	return &worker{w: w, rng: rng, choose: c, key: make([]byte, 0, w.spec.KeySize+8)}
}

// nextOp draws the next operation's kind.
func (wk *worker) nextOp() opKind {
	u := wk.rng.Float64()
	for k := opKind(0); k < numOps; k++ {
		if u < wk.w.cum[k] {
			return k
		}
	}
	return numOps - 1
}

func (wk *worker) keyAt(i uint64) []byte {
	wk.key = wk.w.appendKey(wk.key[:0], i)
	return wk.key
}

// do runs one operation of kind k on d.
func (wk *worker) do(ctx context.Context, d Driver, k opKind) (outcome, error) {
	switch k {
	case opRead:
		found, _, err := d.Get(ctx, wk.keyAt(wk.choose.next()))
		if err != nil || found {
			return outcomeOK, err
		}
		return outcomeMiss, nil
	case opUpdate:
		return outcomeOK, d.Put(ctx, wk.keyAt(wk.choose.next()), wk.w.values.value(wk.rng))
	case opInsert:
		i := wk.w.ks.insert()
		err := d.Put(ctx, wk.keyAt(i), wk.w.values.value(wk.rng))
		wk.w.ks.finished(i)
		return outcomeOK, err
	case opScan:
		limit := 1 + wk.rng.IntN(wk.w.spec.MaxScanLength)
		_, err := d.Scan(ctx, wk.keyAt(wk.choose.next()), limit)
		return outcomeOK, err
	case opRMW:
		key := wk.keyAt(wk.choose.next())
		found, rev, err := d.Get(ctx, key)
		if err != nil {
			return outcomeOK, err
		}
		if !found {
			rev = 0 // compare on "still absent"
		}
		ok, err := d.CompareAndPut(ctx, key, wk.w.values.value(wk.rng), rev)
		switch {
		case err != nil:
			return outcomeOK, err
		case !ok:
			return outcomeConflict, nil
		case !found:
			return outcomeMiss, nil
		}
		return outcomeOK, nil
	case opTxn:
		return wk.txn(ctx, d.(TxnDriver))
	case opTransfer:
		return wk.transfer(ctx, d.(TxnDriver))
	}
	panic(fmt.Sprintf("unknown operation %d", k))
}

// params describes the workload's own knobs, for reports.
func (s *Spec) params() string {
	switch {
	case s.Txn > 0:
		return fmt.Sprintf("keys-per-txn=%d ranges-per-txn=%d ranges=%d keys=%d", s.KeysPerTxn, s.RangesPerTxn, s.Ranges, s.Keys)
	case s.Transfer > 0:
		return fmt.Sprintf("accounts=%d dist=%s", s.Keys, s.Dist)
	case s.Name == "kv":
		return fmt.Sprintf("read-fraction=%g dist=%s keys=%d", s.Read, s.Dist, s.Keys)
	}
	return fmt.Sprintf("dist=%s keys=%d", s.Dist, s.Keys)
}
