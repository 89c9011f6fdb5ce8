package txn

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Metrics count what a Coordinator does. A nil *Metrics counts nothing, so
// a Coordinator without Config.Metrics needs no registry.
type Metrics struct {
	commits         *prometheus.CounterVec
	aborts          prometheus.Counter
	retries         prometheus.Counter
	intentsResolved prometheus.Counter
	phaseSeconds    *prometheus.HistogramVec
}

// The values of the "protocol" label of raftrix_txn_commits_total.
const (
	onePhase = "one_phase"
	twoPhase = "two_phase"
)

// The values of the "phase" label of raftrix_txn_phase_seconds.
const (
	phasePrepare = "prepare" // every participant prepared, settling included
	phaseCommit  = "commit"  // the commit point on the primary's range
)

// NewMetrics creates a coordinator's metrics and registers them on reg (the
// node's registry; never the global one).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftrix_txn_commits_total",
			Help: "Transactions coordinated here that reached their commit point (either branch), by protocol: one_phase (one range) or two_phase.",
		}, []string{"protocol"}),
		aborts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_txn_aborts_total",
			Help: "Two-phase attempts coordinated here that ended aborted: wounded by an older transaction, expired, or failed before their commit point.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_txn_retries_total",
			Help: "Transaction attempts run again after a conflict: an aborted two-phase attempt, or a one-range transaction that met another transaction's intent.",
		}),
		intentsResolved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_txn_intents_resolved_total",
			Help: "Intents resolved (written forward or dropped) by this node's coordinator: those of its own transactions and those it met and settled.",
		}),
		phaseSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftrix_txn_phase_seconds",
			Help:    "How long the phases of two-phase attempts coordinated here took: prepare (every participant, in parallel, conflicts settled) and commit (the commit point on the primary's range).",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2, 16),
		}, []string{"phase"}),
	}
	// Both protocols are exported from the start, so rates are defined.
	m.commits.WithLabelValues(onePhase)
	m.commits.WithLabelValues(twoPhase)
	m.phaseSeconds.WithLabelValues(phasePrepare)
	m.phaseSeconds.WithLabelValues(phaseCommit)
	for _, c := range []prometheus.Collector{m.commits, m.aborts, m.retries, m.intentsResolved, m.phaseSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) commit(protocol string) {
	if m != nil {
		m.commits.WithLabelValues(protocol).Inc()
	}
}

func (m *Metrics) abort() {
	if m != nil {
		m.aborts.Inc()
	}
}

// phase records that a phase of a two-phase attempt, begun at start, ended.
func (m *Metrics) phase(name string, start time.Time) {
	if m != nil {
		m.phaseSeconds.WithLabelValues(name).Observe(time.Since(start).Seconds())
	}
}

func (m *Metrics) retry() {
	if m != nil {
		m.retries.Inc()
	}
}

// countResolved wraps s so that every successful ResolveIntents command,
// and every TxnEnd that resolved keys, counts its keys, whichever path sent it: a coordinator resolving its own
// transaction, or Settle resolving an intent someone met.
func (m *Metrics) countResolved(s Sender) Sender {
	if m == nil || s == nil {
		return s
	}
	return resolveCounter{Sender: s, m: m}
}

type resolveCounter struct {
	Sender
	m *Metrics
}

func (r resolveCounter) Evaluate(ctx context.Context, req *pb.InternalRequest) (*pb.InternalResponse, error) {
	resp, err := r.Sender.Evaluate(ctx, req)
	if err == nil {
		r.count(req, resp)
	}
	return resp, err
}

func (r resolveCounter) EvaluateAll(ctx context.Context, reqs []*pb.InternalRequest) ([]*pb.InternalResponse, []error) {
	resps, errs := r.Sender.EvaluateAll(ctx, reqs)
	for i, req := range reqs {
		if errs[i] == nil {
			r.count(req, resps[i])
		}
	}
	return resps, errs
}

func (r resolveCounter) count(req *pb.InternalRequest, resp *pb.InternalResponse) {
	if res := req.GetResolve(); res != nil {
		r.m.intentsResolved.Add(float64(len(res.Keys)))
	}
	if end := req.GetEnd(); end != nil && resp.Resolved {
		r.m.intentsResolved.Add(float64(len(end.ResolveKeys)))
	}
}
