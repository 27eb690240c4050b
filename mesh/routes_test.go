package mesh

import (
	"reflect"
	"testing"
)

// square: 1-2, 2-3, 3-4, 4-1, plus 1-3 one-sided (only 1 reports it).
func squareGraph(established bool) graph {
	g := graph{1: {}, 2: {}, 3: {}, 4: {}}
	link2 := func(a, b PeerName) {
		g[a][b] = link{established: established}
		g[b][a] = link{established: established}
	}
	link2(1, 2)
	link2(2, 3)
	link2(3, 4)
	link2(4, 1)
	g[1][3] = link{established: true}
	return g
}

func TestRoutesUnicast(t *testing.T) {
	g := squareGraph(true)
	_, strict := g.routes(1, UnknownPeerName, true)
	want := map[PeerName]PeerName{1: UnknownPeerName, 2: 2, 4: 4, 3: 2}
	if !reflect.DeepEqual(strict, want) {
		t.Errorf("strict routes %v, want %v", strict, want)
	}
	_, all := g.routes(1, UnknownPeerName, false)
	if all[3] != 3 {
		t.Errorf("over all connections 3 is direct: %v", all)
	}
	_, none := squareGraph(false).routes(1, UnknownPeerName, true)
	if len(none) != 1 {
		t.Errorf("unestablished connections route: %v", none)
	}
}

// Every source's broadcast tree has n-1 edges, and the edges reach all.
func TestRoutesBroadcastTree(t *testing.T) {
	g := squareGraph(true)
	for src := PeerName(1); src <= 4; src++ {
		reached := map[PeerName]bool{src: true}
		edges := 0
		var walk func(at PeerName)
		walk = func(at PeerName) {
			for _, h := range g.broadcastHops(src, at, true) {
				edges++
				if reached[h] {
					t.Fatalf("source %d: %d reached twice", src, h)
				}
				reached[h] = true
				walk(h)
			}
		}
		walk(src)
		if edges != 3 || len(reached) != 4 {
			t.Errorf("source %d: %d edges reach %v", src, edges, reached)
		}
	}
	if hops := g.broadcastHops(9, 1, true); len(hops) != 0 {
		t.Errorf("unknown source: %v", hops)
	}
}
