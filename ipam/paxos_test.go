package ipam

import (
	"math/rand/v2"
	"slices"
	"testing"

	"weavenet/mesh"
)

// paxosSim runs N paxos nodes over a lossy, reordering, duplicating
// network of state snapshots.
type paxosSim struct {
	rnd      *rand.Rand
	nodes    []*paxos
	inflight []paxosMsg
}

type paxosMsg struct {
	to    int
	state paxosState
}

func newPaxosSim(seed uint64, n int) *paxosSim {
	s := &paxosSim{rnd: rand.New(rand.NewPCG(seed, 7))}
	for i := range n {
		s.nodes = append(s.nodes, newPaxos(peerName(i+1), n))
	}
	return s
}

func (s *paxosSim) send(from int) {
	for to := range s.nodes {
		if to != from {
			s.inflight = append(s.inflight, paxosMsg{to, s.nodes[from].state.clone()})
		}
	}
}

func (s *paxosSim) deliver(i int, quorumOK bool) {
	m := s.inflight[i]
	node := s.nodes[m.to]
	node.state.merge(m.state)
	joined := node.join()
	if node.step(quorumOK) || joined {
		s.send(m.to)
	}
}

// decisions returns the values decided in any node's view.
func (s *paxosSim) decisions() [][]mesh.PeerName {
	var out [][]mesh.PeerName
	for _, n := range s.nodes {
		if v, ok := n.state.decision(n.quorum); ok {
			out = append(out, v)
		}
	}
	return out
}

func (s *paxosSim) checkAgreement(t *testing.T, seed uint64) {
	t.Helper()
	d := s.decisions()
	for _, v := range d[min(1, len(d)):] {
		if !slices.Equal(v, d[0]) {
			t.Fatalf("seed %d: two values decided: %v and %v", seed, d[0], v)
		}
	}
}

func TestPaxosAgreementUnderChaos(t *testing.T) {
	decided := 0
	for seed := range uint64(500) {
		s := newPaxosSim(seed, 3+int(seed%3))
		for range 400 {
			switch r := s.rnd.IntN(20); {
			case r == 0: // someone (re)proposes
				i := s.rnd.IntN(len(s.nodes))
				s.nodes[i].propose(s.rnd.IntN(2) == 0)
				s.send(i)
			case r == 1 && len(s.inflight) > 0: // drop
				k := s.rnd.IntN(len(s.inflight))
				s.inflight = slices.Delete(s.inflight, k, k+1)
			case len(s.inflight) > 0: // deliver, maybe keeping a duplicate
				k := s.rnd.IntN(len(s.inflight))
				s.deliver(k, s.rnd.IntN(2) == 0)
				if s.rnd.IntN(4) != 0 {
					s.inflight = slices.Delete(s.inflight, k, k+1)
				}
			}
			s.checkAgreement(t, seed)
		}
		// Then a quiet network with one proposer: it must decide.
		s.inflight = nil
		s.nodes[0].propose(true)
		s.send(0)
		for len(s.inflight) > 0 {
			s.deliver(0, true)
			s.inflight = s.inflight[1:]
		}
		for i := range s.nodes {
			s.inflight = append(s.inflight, paxosMsg{i, s.nodes[0].state.clone()})
		}
		for len(s.inflight) > 0 {
			s.deliver(0, true)
			s.inflight = s.inflight[1:]
		}
		s.checkAgreement(t, seed)
		if len(s.decisions()) == len(s.nodes) {
			decided++
		}
	}
	if decided != 500 {
		t.Fatalf("only %d of 500 runs decided everywhere once quiet", decided)
	}
}

func TestPaxosWaitsForAllThenQuorum(t *testing.T) {
	s := newPaxosSim(1, 3)
	s.nodes[0].propose(false)
	s.send(0)
	// Only node 1 hears it.
	s.inflight = []paxosMsg{s.inflight[0]}
	s.deliver(0, false)
	s.inflight = s.inflight[1:]
	// Node 0 gets node 1's promise, but waits for node 2.
	var toZero []paxosMsg
	for _, m := range s.inflight {
		if m.to == 0 {
			toZero = append(toZero, m)
		}
	}
	s.inflight = toZero
	s.deliver(0, false)
	if !s.nodes[0].state[s.nodes[0].self].Accepted.zero() {
		t.Fatal("accepted with a quorum before the grace period")
	}
	if !s.nodes[0].step(true) {
		t.Fatal("did not go ahead with a quorum")
	}
	if v := s.nodes[0].state[s.nodes[0].self].Value; len(v) != 2 {
		t.Fatalf("value %v", v)
	}
}
