package mesh

import (
	"bytes"
	"encoding/gob"
	"io"
	"net"
	"testing"
	"time"
)

func gobOf(vs ...interface{}) []byte {
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	for _, v := range vs {
		if err := enc.Encode(v); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

func FuzzHandshakeFields(f *testing.F) {
	f.Add(gobOf(map[string]string{"Name": "aa:bb:cc:dd:ee:ff", "NickName": "n", "UID": "1", "ConnID": "2", "PeerNameFlavour": "mac", "ShortID": "7", "Trusted": "true"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeStringMap(b, maxFields)
		if err != nil {
			return
		}
		if len(m) > maxFields {
			t.Fatalf("%d fields", len(m))
		}
		_, _ = parseIdentity(m)
	})
}

func FuzzTopology(f *testing.F) {
	f.Add(encodeTopology(sampleTopology()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := decodeTopology(b, nil)
		if err != nil {
			return
		}
		if len(recs) > maxTopologyPeers {
			t.Fatalf("%d peers", len(recs))
		}
		// What decodes applies, and encodes back to something that decodes.
		ps := newPeers(&Peer{Name: 0x0a0b0c0d0e0f, UID: 5, HasShortID: true})
		if _, _, _, err := ps.applyUpdate(b); err != nil {
			t.Fatal(err)
		}
		ps.collect()
		if _, err := decodeTopology(ps.encode(ps.names()), nil); err != nil {
			t.Fatal(err)
		}
		g, _, _ := ps.snapshot()
		g.routes(0x0a0b0c0d0e0f, UnknownPeerName, true)
		for _, r := range recs {
			g.broadcastHops(PeerNameFromBin(r.peer.NameByte), 0x0a0b0c0d0e0f, false)
		}
	})
}

func FuzzGossipMessage(f *testing.F) {
	f.Add(byte(ProtocolGossipUnicast), gobOf("ch", PeerName(1), PeerName(2), []byte("x")))
	f.Add(byte(ProtocolGossipBroadcast), gobOf("ch", PeerName(1), []byte("x")))
	f.Add(byte(ProtocolGossip), gobOf("topology", PeerName(1), encodeTopology(sampleTopology())))
	f.Fuzz(func(t *testing.T, tag byte, b []byte) {
		m, err := decodeGossip(tag, b)
		if err == nil && len(m.channel) > maxChannelName {
			t.Fatal("long channel name")
		}
	})
}

func FuzzV1Stream(f *testing.F) {
	f.Add(gobOf(map[string]string{"Name": "x"}, []byte("hello"), []byte{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		gr := newGobReader(bytes.NewReader(b), 1024)
		if body, err := gr.s.nextValue(); err == nil {
			_, _ = decodeStringMapBody(body, maxFields)
		}
		for {
			msg, err := gr.readFrame()
			if err != nil {
				return
			}
			if len(msg) > 1024 {
				t.Fatal("frame above the limit")
			}
		}
	})
}

// FuzzHandshake plays a remote that sends b and reads whatever we send.
func FuzzHandshake(f *testing.F) {
	f.Add([]byte("weave\x01\x02\x00"), false)
	f.Add(append([]byte("weave\x01\x02\x01"), make([]byte, 40)...), true)
	f.Add(append([]byte("weave\x01\x01"), gobOf(map[string]string{"Name": "::1", "PublicKey": "00"})...), true)
	f.Fuzz(func(t *testing.T, b []byte, encrypt bool) {
		ours, theirs := net.Pipe()
		defer ours.Close()
		go func() {
			defer theirs.Close()
			go io.Copy(io.Discard, theirs)
			theirs.Write(b)
			time.Sleep(10 * time.Millisecond)
		}()
		h := handshake{conn: ours, minVer: 1, maxVer: 2, fields: map[string]string{"Name": "::1"}, encrypt: encrypt,
			password: func(map[string]string) ([]byte, error) { return []byte("p"), nil },
			deadline: time.Now().Add(200 * time.Millisecond)}
		res, err := h.run()
		if err == nil {
			res.r.setLimit(1 << 16)
			_, _ = res.r.readFrame()
		}
	})
}
