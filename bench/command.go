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

Workloads: kv (reads and blind writes, --read-fraction) and ycsb (the YCSB
core workloads A-F). The raftrix driver talks to RaftrixDB's KV service, the
etcd driver to etcd v3, with the same keys, values and operations.

Load: --clients workers share --conns connections. With --rate R the load is
open loop: operations start on a fixed schedule of R per second and latency
counts from the scheduled start, so queueing is not hidden (no coordinated
omission). With --rate 0 each worker sends its next operation when the last
one returns. --warmup runs before the measured time and is not reported.

By default the workload's keys are written once (--load) before the run.`,
		Example: `  raftrix bench kv --read-fraction 0.9 --clients 32 --duration 30s
  raftrix bench ycsb --workload A --rate 2000 --warmup 5s --json a.json
  raftrix bench ycsb --workload C --driver etcd --endpoints 127.0.0.1:2379`,
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
	fs.BoolVar(&o.load, "load", true, "write every key of --keys once before the run (not measured)")
	fs.DurationVar(&o.readyWait, "ready-wait", 30*time.Second, "wait this long for the store to answer before starting")
	fs.StringVar(&o.dist, "key-dist", "", "key distribution: uniform, zipfian, sequential, or latest (ycsb D) (default: kv uniform, ycsb the workload's)")
	fs.Uint64Var(&o.keys, "keys", 10000, "number of keys in the key space before inserts")
	fs.IntVar(&o.keySize, "key-size", 16, fmt.Sprintf("key size in bytes (at least %d)", minKeySize))
	fs.IntVar(&o.valueSize, "value-size", 256, "value size in bytes")

	cmd.AddCommand(newKVCommand(o, stdout, stderr), newYCSBCommand(o, stdout, stderr))
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

	dcfg := DriverConfig{Endpoints: endpoints, Conns: o.conns}
	d, err := OpenDriver(o.driver, dcfg)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := WaitReady(ctx, d, o.readyWait); err != nil {
		return err
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
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if o.jsonPath != "" {
		if err := rep.WriteJSONFile(o.jsonPath); err != nil {
			return fmt.Errorf("write --json: %w", err)
		}
	}
	return nil
}
