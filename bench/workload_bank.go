package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The bank: --accounts accounts start with bankInitialBalance each, and
// every operation moves 1..bankMaxTransfer (at most the balance) from one
// account to another. A transfer reads both balances, then commits one
// transaction that compares both mod revisions it read and puts both new
// balances: YCSB F's read-modify-write over two keys. A failed compare is a
// conflict and moves nothing. Whatever the interleaving, the total must
// stay accounts × bankInitialBalance; CheckBank verifies it after the run.
const (
	bankInitialBalance = 1000
	bankMaxTransfer    = 100
)

// BankOptions are the bank workload's knobs.
type BankOptions struct {
	Accounts uint64
	// Dist picks both accounts of a transfer: uniform (the default) or
	// zipfian (a few hot accounts, many conflicts).
	Dist    string
	KeySize int
}

// BankSpec returns the bank workload.
func BankSpec(o BankOptions) (Spec, error) {
	if o.Dist == "" {
		o.Dist = distUniform
	}
	if o.Dist != distUniform && o.Dist != distZipfian {
		return Spec{}, fmt.Errorf("the bank workload picks accounts uniform or zipfian, not %s", o.Dist)
	}
	s := Spec{Name: "bank", Transfer: 1, Dist: o.Dist, Keys: o.Accounts, KeySize: o.KeySize}
	return s, s.Validate()
}

func (s *Spec) validateBank() error {
	if s.Read+s.Update+s.Insert+s.Scan+s.RMW+s.Txn > 0 {
		return fmt.Errorf("workload %s: transfers cannot be mixed with other operations, which would break the balances", s.Name)
	}
	if s.Keys < 2 {
		return fmt.Errorf("--accounts must be at least 2, got %d", s.Keys)
	}
	return nil
}

// balance parses an account's value.
func balance(key, value []byte, found bool) (int64, error) {
	if !found {
		return 0, status.Errorf(codes.NotFound, "account %q does not exist (was the bank loaded?)", key)
	}
	b, err := strconv.ParseInt(string(value), 10, 64)
	if err != nil {
		return 0, status.Errorf(codes.DataLoss, "account %q holds %q, not a balance", key, value)
	}
	return b, nil
}

// transfer runs one transfer of the bank workload.
func (wk *worker) transfer(ctx context.Context, d TxnDriver) (outcome, error) {
	w, m := wk.w, &wk.multi
	a, b := wk.choose.next(), wk.choose.next()
	for b == a {
		b = wk.choose.next()
	}
	m.idx = append(m.idx[:0], a, b)
	m.setKeys(w)
	var bal [2]int64
	for j := range 2 {
		v, rev, found, err := d.GetValue(ctx, m.keys[j])
		if err != nil {
			return outcomeOK, err
		}
		if bal[j], err = balance(m.keys[j], v, found); err != nil {
			return outcomeOK, err
		}
		m.expect[j] = rev
	}
	amount := min(1+wk.rng.Int64N(bankMaxTransfer), max(bal[0], 0))
	m.own[0] = strconv.AppendInt(m.own[0][:0], bal[0]-amount, 10)
	m.own[1] = strconv.AppendInt(m.own[1][:0], bal[1]+amount, 10)
	m.values[0], m.values[1] = m.own[0], m.own[1]
	res, err := d.CompareAndPutAll(ctx, m.keys, m.values, m.expect, false)
	switch {
	case err != nil:
		return outcomeOK, err
	case !res.Succeeded:
		return outcomeConflict, nil
	}
	return outcomeOK, nil
}

// BankCheck is the bank's audit after a run: every balance read back and
// summed.
type BankCheck struct {
	Accounts uint64 `json:"accounts"`
	// Want is Accounts × the initial balance; Total what the accounts held.
	Want  int64 `json:"want"`
	Total int64 `json:"total"`
	// Negative counts accounts below zero (a transfer never overdraws).
	Negative int64 `json:"negative"`
	// Totals has the total of each pass over the accounts. A pass reads the
	// accounts one by one, not as one snapshot, so a transaction still in
	// flight (its client gave up on it after --timeout) can straddle it; a
	// wrong total is read again, up to bankCheckPasses times, and only a
	// total wrong every time fails the check.
	Totals []int64 `json:"totals"`
	// Conserved is true when the last pass found Want and no negative
	// balance.
	Conserved bool `json:"conserved"`
}

const (
	bankCheckPasses  = 5
	bankCheckReaders = 32
)

// CheckBank reads every account of a bank spec and checks that the money
// was conserved. An error means the accounts could not be read, not that
// the check failed: that is BankCheck.Conserved.
func CheckBank(ctx context.Context, spec Spec, d TxnDriver, timeout time.Duration) (*BankCheck, error) {
	return checkBank(ctx, spec, d, timeout, time.Second)
}

// checkBank is CheckBank waiting retryDelay before reading a wrong total
// again.
func checkBank(ctx context.Context, spec Spec, d TxnDriver, timeout, retryDelay time.Duration) (*BankCheck, error) {
	wl, err := newWorkload(spec, 0)
	if err != nil {
		return nil, err
	}
	c := &BankCheck{Accounts: spec.Keys, Want: int64(spec.Keys) * bankInitialBalance}
	for pass := 0; pass < bankCheckPasses; pass++ {
		if pass > 0 {
			select {
			case <-time.After(retryDelay):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		total, negative, err := bankPass(ctx, wl, d, timeout)
		if err != nil {
			return nil, err
		}
		c.Total, c.Negative = total, negative
		c.Totals = append(c.Totals, total)
		if c.Conserved = total == c.Want && negative == 0; c.Conserved {
			break
		}
	}
	return c, nil
}

// bankPass reads every account once and returns their sum and the number
// of negative balances.
func bankPass(ctx context.Context, wl *workload, d TxnDriver, timeout time.Duration) (total, negative int64, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Uint64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range bankCheckReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var key []byte
			var sum, neg int64
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= wl.spec.Keys {
					break
				}
				key = wl.appendKey(key[:0], i)
				b, err := readBalance(ctx, d, key, timeout)
				if err != nil {
					cancel(fmt.Errorf("bank check: %w", err))
					return
				}
				sum += b
				if b < 0 {
					neg++
				}
			}
			mu.Lock()
			total += sum
			negative += neg
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, 0, err
	}
	return total, negative, nil
}

// readBalance reads one account, retrying a few times while the store is
// Unavailable.
func readBalance(ctx context.Context, d TxnDriver, key []byte, timeout time.Duration) (int64, error) {
	var err error
	for attempt := range 10 {
		octx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			octx, cancel = context.WithTimeout(ctx, timeout)
		}
		var v []byte
		var found bool
		v, _, found, err = d.GetValue(octx, key)
		cancel()
		if err == nil {
			return balance(key, v, found)
		}
		if c := errorCode(err); c != codes.Unavailable.String() && c != codes.DeadlineExceeded.String() {
			return 0, err
		}
		select {
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		case <-ctx.Done():
			return 0, err
		}
	}
	return 0, err
}
