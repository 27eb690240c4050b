package mesh

import (
	"bytes"
	"encoding/gob"
	"reflect"
	"testing"
)

func TestPeerNameParse(t *testing.T) {
	for in, want := range map[string]string{
		"aa:bb:cc:dd:ee:ff": "aa:bb:cc:dd:ee:ff",
		"1:2:3:4:5:6":       "01:02:03:04:05:06",
		"::1":               "00:00:00:00:00:01",
		"aa::":              "aa:00:00:00:00:00",
		"aa::ff":            "aa:00:00:00:00:ff",
		"aa:bb::ee:ff":      "aa:bb:00:00:ee:ff",
		"a:b:c:d::f":        "0a:0b:0c:0d:00:0f",
	} {
		n, err := PeerNameFromString(in)
		if err != nil || n.String() != want {
			t.Errorf("%q: got %v, %v; want %s", in, n, err, want)
		}
		if PeerNameFromBin(n.bytes()) != n {
			t.Errorf("%q: bytes round trip", in)
		}
	}
	for _, bad := range []string{"", "::", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aa::bb::cc", "xyz", "aaa:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:ff::", ":aa:bb:cc:dd:ee"} {
		if n, err := PeerNameFromString(bad); err == nil {
			t.Errorf("%q parsed as %v", bad, n)
		}
	}
}

func sampleTopology() []peerRecord {
	return []peerRecord{
		{peer: wirePeer{NameByte: PeerName(0x0a0b0c0d0e0f).bytes(), NickName: "one", UID: 1 << 60, Version: 7, ShortID: 4095, HasShortID: true},
			conns: []wireConn{{NameByte: PeerName(2).bytes(), RemoteTCPAddr: "10.0.0.2:6783", Outbound: true, Established: true},
				{NameByte: PeerName(3).bytes(), RemoteTCPAddr: "[fd00::3]:41000"}}},
		{peer: wirePeer{NameByte: PeerName(2).bytes()}, conns: []wireConn{}},
		{peer: wirePeer{NameByte: PeerName(3).bytes(), NickName: "three", UID: 3, Version: 1}, conns: []wireConn{}},
	}
}

func TestTopologyRoundTrip(t *testing.T) {
	in := sampleTopology()
	got, err := decodeTopology(encodeTopology(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("got %+v\nwant %+v", got, in)
	}
	// encoding/gob reads what we write, as a mesh peer does.
	dec := gob.NewDecoder(bytes.NewReader(encodeTopology(in)))
	for _, r := range in {
		var p wirePeer
		var c []wireConn
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if err := dec.Decode(&c); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p, r.peer) || len(c) != len(r.conns) {
			t.Fatalf("gob read %+v %+v", p, c)
		}
	}
}

func TestStringMapCodec(t *testing.T) {
	in := map[string]string{"Name": "aa:bb:cc:dd:ee:ff", "NickName": "x", "": "", "UID": "123"}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(in); err != nil {
		t.Fatal(err)
	}
	got, err := decodeStringMap(buf.Bytes(), 16)
	if err != nil || !reflect.DeepEqual(got, in) {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := decodeStringMap(buf.Bytes(), 3); err == nil {
		t.Fatal("more entries than allowed were read")
	}
}
