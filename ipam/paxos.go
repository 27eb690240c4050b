package ipam

import (
	"maps"
	"slices"

	"weavenet/mesh"
)

// Consensus bootstrap: single-decree Paxos run over gossip among the peers
// started with --ipalloc-init consensus[=N]. The value decided is the list
// of peers that share the Range at first; every peer that learns it claims
// the same ring (ring.claim), so nobody owns anything before a quorum of
// N/2+1 agreed, and two sides of a partition can't both bootstrap.
//
// Every participant is an acceptor, and a proposer when it needs the ring.
// The gossiped value is paxosState: for each participant, its acceptor
// record. Only the participant changes its own record, bumping Version, so
// paxosState merges like the ring does (per node, greater record wins).
//
//  1. A proposer picks ballot (round above any seen, itself) and promises
//     it to itself: its record's Promised is the "prepare" message.
//  2. An acceptor that sees a Promised or Accepted ballot greater than its
//     own Promised promises it (phase 1b).
//  3. When all N records (or, after a grace period, a quorum) have
//     Promised == its ballot, the proposer
//     picks the Value of the highest Accepted among them, or, if none, its
//     own list of known participants, and accepts it itself (phase 2a).
//  4. An acceptor that sees an Accepted ballot >= its Promised accepts it
//     with its value (phase 2b). A value travels with its ballot, and only
//     the ballot's proposer ever chooses it, so copying it from any record
//     is safe.
//  5. A quorum of records with the same Accepted ballot is a decision,
//     which anyone can see in the merged state.
type ballot struct {
	Round    uint32
	Proposer mesh.PeerName
}

func (b ballot) less(o ballot) bool {
	if b.Round != o.Round {
		return b.Round < o.Round
	}
	return b.Proposer < o.Proposer
}

func (b ballot) zero() bool { return b == ballot{} }

// paxosNode is one acceptor's record.
type paxosNode struct {
	Version  uint32
	Promised ballot
	Accepted ballot
	Value    []mesh.PeerName // sorted; set iff Accepted is not zero; never mutated in place
}

func (a paxosNode) equal(b paxosNode) bool {
	return a.Version == b.Version && a.Promised == b.Promised && a.Accepted == b.Accepted &&
		slices.Equal(a.Value, b.Value)
}

// paxosState maps each participant to its record.
type paxosState map[mesh.PeerName]paxosNode

func (s paxosState) clone() paxosState { return maps.Clone(s) }

// merge folds o into s and reports whether s changed. Records join field
// by field (the greater promise; the greater accepted ballot with its
// value), as Weave Net's consensus state does: an acceptor's promise and
// acceptance only grow, so the join is its latest record, and records of
// one acceptor relayed by peers of either kind combine the same way.
func (s paxosState) merge(o paxosState) bool {
	changed := false
	for n, rec := range o {
		cur, ok := s[n]
		if !ok {
			s[n] = rec
			changed = true
			continue
		}
		if j := cur.join(rec); !j.equal(cur) {
			s[n] = j
			changed = true
		}
	}
	return changed
}

// join is the least record at least as far along as both.
func (a paxosNode) join(b paxosNode) paxosNode {
	out := a
	out.Version = max(a.Version, b.Version)
	if a.Promised.less(b.Promised) {
		out.Promised = b.Promised
	}
	if a.Accepted.less(b.Accepted) || (a.Accepted == b.Accepted && slices.Compare(b.Value, a.Value) > 0) {
		out.Accepted, out.Value = b.Accepted, b.Value
	}
	return out
}

func (s paxosState) equal(o paxosState) bool {
	return maps.EqualFunc(s, o, paxosNode.equal)
}

// participants are the nodes with a record, sorted.
func (s paxosState) participants() []mesh.PeerName {
	return slices.Sorted(maps.Keys(s))
}

// decision returns the decided value, if a quorum accepted one ballot.
func (s paxosState) decision(quorum int) ([]mesh.PeerName, bool) {
	count := map[ballot]int{}
	for _, rec := range s {
		if rec.Accepted.zero() {
			continue
		}
		count[rec.Accepted]++
		if count[rec.Accepted] >= quorum {
			return rec.Value, true
		}
	}
	return nil, false
}

// paxos is one node's view and role in the consensus.
type paxos struct {
	self     mesh.PeerName
	total    int // N: the initial peers expected
	quorum   int // N/2+1
	state    paxosState
	proposal ballot // our ballot while we propose; zero otherwise
	// durable is our record as last persisted (hasDurable: there is
	// one): what a failed persist rolls back to, since nothing unpersisted
	// of ours may be gossiped.
	durable    paxosNode
	hasDurable bool
}

func newPaxos(self mesh.PeerName, total int) *paxos {
	return &paxos{self: self, total: total, quorum: total/2 + 1, state: paxosState{}}
}

// maxRound is the highest round in any record.
func (p *paxos) maxRound() uint32 {
	var r uint32
	for _, rec := range p.state {
		r = max(r, rec.Promised.Round, rec.Accepted.Round)
	}
	return r
}

// underway says whether anyone has proposed: some record holds a promise.
func (p *paxos) underway() bool {
	for _, rec := range p.state {
		if !rec.Promised.zero() {
			return true
		}
	}
	return false
}

// propose starts (or restarts) a proposal with a ballot above all seen.
func (p *paxos) propose(quorumOK bool) {
	p.proposal = ballot{Round: p.maxRound() + 1, Proposer: p.self}
	me := p.state[p.self]
	me.Promised = p.proposal
	me.Version++
	p.state[p.self] = me
	p.step(quorumOK)
}

// join makes us a participant (with an empty record) so that proposers
// count us; it reports whether our record was created.
func (p *paxos) join() bool {
	if _, ok := p.state[p.self]; ok {
		return false
	}
	p.state[p.self] = paxosNode{Version: 1}
	return true
}

// step runs the acceptor and proposer rules on the current state until
// nothing changes, and reports whether our own record changed. A proposer
// waits for promises from all N peers, so that all of them get a share of
// the Range, unless quorumOK: then a quorum is enough (safety needs no
// more; this only stops the first promises from leaving slower peers out).
func (p *paxos) step(quorumOK bool) bool {
	changed := false
	for p.stepOnce(quorumOK) {
		changed = true
	}
	return changed
}

func (p *paxos) stepOnce(quorumOK bool) bool {
	if _, ok := p.state.decision(p.quorum); ok {
		return false
	}
	me, ok := p.state[p.self]
	if !ok {
		return false // not a participant
	}
	// Acceptor, phase 2b: accept the highest accepted ballot not below our promise.
	var best paxosNode
	for _, rec := range p.state {
		if best.Accepted.less(rec.Accepted) {
			best = rec
		}
	}
	if !best.Accepted.zero() && !best.Accepted.less(me.Promised) && me.Accepted.less(best.Accepted) {
		me.Promised, me.Accepted, me.Value = best.Accepted, best.Accepted, best.Value
		me.Version++
		p.state[p.self] = me
		return true
	}
	// Acceptor, phase 1b: promise the highest ballot anyone promised.
	high := me.Promised
	for _, rec := range p.state {
		if high.less(rec.Promised) {
			high = rec.Promised
		}
	}
	if high != me.Promised {
		me.Promised = high
		me.Version++
		p.state[p.self] = me
		if high != p.proposal {
			p.proposal = ballot{} // outbid: leave it to the higher proposer
		}
		return true
	}
	// Proposer, phase 2a.
	if p.proposal.zero() || me.Promised != p.proposal || me.Accepted == p.proposal {
		return false
	}
	promises := 0
	var prior paxosNode
	for _, rec := range p.state {
		if rec.Promised == p.proposal {
			promises++
			if prior.Accepted.less(rec.Accepted) {
				prior = rec
			}
		}
	}
	if promises < p.quorum || (!quorumOK && promises < p.total) {
		return false
	}
	value := prior.Value
	if prior.Accepted.zero() {
		value = p.state.participants()
	}
	me.Accepted, me.Value = p.proposal, value
	me.Version++
	p.state[p.self] = me
	return true
}
