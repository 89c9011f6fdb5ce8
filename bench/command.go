package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"
)

// options are the flags shared by every workload.
type options struct {
	driver    string
	endpoints []string
	conns     int
	run       RunConfig
	seed      uint64
	jsonPath  string
	label     string
	load      bool
	readyWait time.Duration

	dist               string
	keys               uint64
	keySize, valueSize int
}

// NewCommand returns the `bench` command, with one subcommand per workload
// (kv, ycsb). stdout gets the final report, stderr the live progress lines.
func NewCommand(stdout, stderr io.Writer) *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark a RaftrixDB (or etcd) cluster",
		Long: `bench runs a workload against a cluster and reports throughput and latency
per operation type: a live line each second on stderr, a table on stdout at
the end, and, with --json FILE, the same numbers as JSON.

Workloads: kv (reads and blind writes, --read-fraction), ycsb (the YCSB
core workloads A-F), txn (multi-key compare-and-set transactions over a
chosen number of ranges) and bank (transfers between accounts, with a check
that money is conserved). The raftrix driver talks to RaftrixDB's KV
service, the etcd driver to etcd v3, with the same keys, values and
operations. summary tabulates the --json files of several runs.

Load: --clients workers share --conns connections. With --rate R the load is
open loop: operations start on a fixed schedule of R per second and latency
counts from the scheduled start, so queueing is not hidden (no coordinated
omission). With --rate 0 each worker sends its next operation when the last
one returns. --warmup runs before the measured time and is not reported.

CPU: with --cpu-pids (the store's server processes) the report adds the CPU
time, user+system, that they and the bench process used over the measured
time, and their sum per completed operation.

By default the workload's keys are written once (--load) before the run.`,
		Example: `  raftrix bench kv --read-fraction 0.9 --clients 32 --duration 30s
  raftrix bench ycsb --workload A --rate 2000 --warmup 5s --json a.json
  raftrix bench ycsb --workload C --driver etcd --endpoints 127.0.0.1:2379
  raftrix bench txn --keys-per-txn 4 --ranges-per-txn 4 --ranges 64 --clients 64
  raftrix bench bank --accounts 1000 --clients 32 --duration 10s
  raftrix bench kv --read-fraction 0 --cpu-pids "$(pgrep -d, -x raftrix)"
  raftrix bench summary results/*.json`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	fs := cmd.PersistentFlags()
	fs.StringVar(&o.driver, "driver", DriverRaftrix, "store to benchmark: raftrix or etcd")
	fs.StringSliceVar(&o.endpoints, "endpoints", nil, "HOST:PORT of the store's nodes (default 127.0.0.1:7001 for raftrix, 127.0.0.1:2379 for etcd)")
	fs.IntVar(&o.conns, "conns", 0, "gRPC connections shared by the clients round-robin; connection i goes to endpoint i mod len(endpoints) (0: one per endpoint)")
	fs.IntVar(&o.run.Clients, "clients", 16, "concurrent workers")
	fs.DurationVar(&o.run.Duration, "duration", 30*time.Second, "measured time after the warmup (unlimited when only --total is given)")
	fs.Int64Var(&o.run.Total, "total", 0, "stop after this many measured operations (0: no limit)")
	fs.Float64Var(&o.run.Rate, "rate", 0, "target ops/s of all clients together, open loop (0: closed loop)")
	fs.DurationVar(&o.run.Warmup, "warmup", 0, "run this long before measuring")
	fs.DurationVar(&o.run.Timeout, "timeout", 5*time.Second, "bound on each operation (0: none)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of keys, values and operation choices")
	fs.StringVar(&o.jsonPath, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&o.label, "label", "", "name of the run in the JSON report, which summary groups by (default: the workload)")
	fs.BoolVar(&o.load, "load", true, "write every key of --keys once before the run (not measured)")
	fs.IntSliceVar(&o.run.CPUPids, "cpu-pids", nil, "comma-separated PIDs of the store's server processes: report their CPU time and this process's over the measured time, and CPU per operation (Linux /proc)")
	fs.DurationVar(&o.readyWait, "ready-wait", 30*time.Second, "wait this long for the store to answer before starting")
	fs.StringVar(&o.dist, "key-dist", "", "key distribution: uniform, zipfian, sequential, or latest (ycsb D) (default: kv uniform, ycsb the workload's)")
	fs.Uint64Var(&o.keys, "keys", 10000, "number of keys in the key space before inserts")
	fs.IntVar(&o.keySize, "key-size", 16, fmt.Sprintf("key size in bytes (at least %d)", minKeySize))
	fs.IntVar(&o.valueSize, "value-size", 256, "value size in bytes")

	cmd.AddCommand(newKVCommand(o, stdout, stderr), newYCSBCommand(o, stdout, stderr),
		newTxnCommand(o, stdout, stderr), newBankCommand(o, stdout, stderr), newSummaryCommand(stdout))
	return cmd
}

func newKVCommand(o *options, stdout, stderr io.Writer) *cobra.Command {
	var readFraction float64
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Reads and blind writes of a fixed key space",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := KVSpec(KVOptions{ReadFraction: readFraction, Dist: o.dist, Keys: o.keys, KeySize: o.keySize, ValueSize: o.valueSize})
			if err != nil {
				return err
			}
			return o.execute(cmd, spec, stdout, stderr)
		},
	}
	cmd.Flags().Float64Var(&readFraction, "read-fraction", 0.5, "share of operations that are reads; the rest are writes")
	return cmd
}

func newYCSBCommand(o *options, stdout, stderr io.Writer) *cobra.Command {
	var workload string
	var maxScan int
	cmd := &cobra.Command{
		Use:   "ycsb",
		Short: "A YCSB core workload (A-F)",
		Long: `ycsb runs one of the YCSB core workloads, on zipfian keys unless --key-dist says otherwise:
  A  50% reads, 50% updates
  B  95% reads, 5% updates
  C  100% reads
  D  95% reads of the latest keys, 5% inserts
  E  95% short scans (1..--max-scan-length keys), 5% inserts
  F  50% reads, 50% read-modify-writes (Get, then a Put compared on the mod revision read)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := YCSBSpec(YCSBOptions{Workload: workload, Dist: o.dist, Keys: o.keys, KeySize: o.keySize, ValueSize: o.valueSize, MaxScanLength: maxScan})
			if err != nil {
				return err
			}
			return o.execute(cmd, spec, stdout, stderr)
		},
	}
	cmd.Flags().StringVar(&workload, "workload", "A", "YCSB core workload: A, B, C, D, E or F")
	cmd.Flags().IntVar(&maxScan, "max-scan-length", 100, "longest scan of workload E")
	return cmd
}

func newTxnCommand(o *options, stdout, stderr io.Writer) *cobra.Command {
	var to TxnOptions
	cmd := &cobra.Command{
		Use:   "txn",
		Short: "Multi-key compare-and-set transactions over chosen ranges",
		Long: `txn runs transactions of --keys-per-txn keys spread over --ranges-per-txn
ranges. Each is one KV.Txn (etcd: one Txn):

  if   mod_revision(k) == last seen mod revision of k, for every key k
  then get k, put k (a new value of --value-size bytes), for every key k
  else get k, for every key k

A failed compare counts as a conflict; its gets tell the workers the keys'
new revisions. On RaftrixDB a transaction within one range is a single
Raft command (1PC); across ranges it is two-phase commit.

Keys are placed in ranges by their first two bytes, which is how
'raftrix start --ranges N' splits the key space: give the cluster's --ranges.
Key i is in range i mod --ranges, keys are drawn uniformly within each range
chosen, and --keys must give every range at least
ceil(keys-per-txn / ranges-per-txn) keys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			to.Dist, to.Keys, to.KeySize, to.ValueSize = o.dist, o.keys, o.keySize, o.valueSize
			spec, err := TxnSpec(to)
			if err != nil {
				return err
			}
			return o.execute(cmd, spec, stdout, stderr)
		},
	}
	cmd.Flags().IntVar(&to.KeysPerTxn, "keys-per-txn", 4, fmt.Sprintf("keys each transaction reads, compares and writes (at most %d)", maxKeysPerTxn))
	cmd.Flags().IntVar(&to.RangesPerTxn, "ranges-per-txn", 1, "distinct ranges the keys of a transaction lie in (1: single-range, one-phase on RaftrixDB)")
	cmd.Flags().IntVar(&to.Ranges, "ranges", 64, "the cluster's number of initial ranges ('raftrix start --ranges'), which places the keys")
	return cmd
}

func newBankCommand(o *options, stdout, stderr io.Writer) *cobra.Command {
	var accounts uint64
	cmd := &cobra.Command{
		Use:   "bank",
		Short: "Transfers between accounts, checking that money is conserved",
		Long: fmt.Sprintf(`bank loads --accounts accounts of %d each (ignoring --keys and --value-size),
then each operation transfers 1..%d (at most the balance) between two
accounts: read both balances, then one transaction (RaftrixDB: KV.Txn; etcd:
Txn) that compares both mod revisions read and writes both new balances. A
failed compare counts as a conflict and moves nothing. After the run every
balance is read back: the command fails when the total is not accounts × %d
or a balance is negative. --key-dist uniform (default) or zipfian picks the
accounts; zipfian makes a few accounts hot.`, bankInitialBalance, bankMaxTransfer, bankInitialBalance),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := BankSpec(BankOptions{Accounts: accounts, Dist: o.dist, KeySize: o.keySize})
			if err != nil {
				return err
			}
			return o.execute(cmd, spec, stdout, stderr)
		},
	}
	cmd.Flags().Uint64Var(&accounts, "accounts", 1000, "number of accounts")
	return cmd
}

// execute connects, loads, runs and reports.
func (o *options) execute(cmd *cobra.Command, spec Spec, stdout, stderr io.Writer) error {
	if cmd.Flags().Changed("total") && !cmd.Flags().Changed("duration") {
		o.run.Duration = 0
	}
	endpoints := o.endpoints
	if len(endpoints) == 0 {
		endpoints = defaultEndpoints[o.driver]
	}
	o.run.Seed = o.seed
	o.run.Live = stderr
	if err := o.run.validate(); err != nil {
		return err
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	// Ctrl-C ends the run early and still prints what was measured.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	if len(o.run.CPUPids) > 0 {
		// Fail now rather than after the load.
		if _, err := newCPUMeter(o.run.CPUPids); err != nil {
			return err
		}
	}
	dcfg := DriverConfig{Endpoints: endpoints, Conns: o.conns}
	d, err := OpenDriver(o.driver, dcfg)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := WaitReady(ctx, d, o.readyWait); err != nil {
		return err
	}
	if spec.Txn > 0 {
		warnRangeLayout(ctx, d, spec, stderr)
	}
	if o.load {
		if err := Load(ctx, o.run, spec, d); err != nil {
			return err
		}
	}
	rep, err := Run(ctx, o.run, spec, d)
	if err != nil {
		return err
	}
	rep.Driver, rep.Endpoints, rep.Conns = o.driver, endpoints, dcfg.conns()
	rep.Label, rep.Params = o.label, spec.params()
	if spec.Transfer > 0 {
		// The audit runs even after Ctrl-C: an interrupted run must still
		// have conserved the money.
		if rep.Bank, err = CheckBank(context.WithoutCancel(ctx), spec, d.(TxnDriver), o.run.Timeout); err != nil {
			return err
		}
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if o.jsonPath != "" {
		if err := rep.WriteJSONFile(o.jsonPath); err != nil {
			return fmt.Errorf("write --json: %w", err)
		}
	}
	if rep.Bank != nil && !rep.Bank.Conserved {
		return fmt.Errorf("bank invariant violated: %d accounts hold %d, want %d, %d negative", rep.Bank.Accounts, rep.Bank.Total, rep.Bank.Want, rep.Bank.Negative)
	}
	return nil
}

// warnRangeLayout warns when a RaftrixDB cluster's ranges are not the even
// split of --ranges that the txn workload's keys assume: its transactions
// would then not touch the number of ranges asked for.
func warnRangeLayout(ctx context.Context, d Driver, spec Spec, stderr io.Writer) {
	rd, ok := d.(*raftrixDriver)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	starts, err := rd.userRangeStarts(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "warning: cannot list the cluster's ranges to check --ranges %d: %v\n", spec.Ranges, err)
		return
	}
	l := rangeLayout{ranges: spec.Ranges}
	same := len(starts) == spec.Ranges-1
	for r := 1; same && r < spec.Ranges; r++ {
		p := l.rangeStart(r)
		same = string(starts[r-1]) == string([]byte{byte(p >> 8), byte(p)})
	}
	if !same {
		fmt.Fprintf(stderr, "warning: the cluster has %d user ranges, not the even split of --ranges %d that the txn keys assume; transactions may touch other numbers of ranges than --ranges-per-txn\n",
			len(starts)+1, spec.Ranges)
	}
}
