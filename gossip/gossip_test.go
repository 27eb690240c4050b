package gossip

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPeerNameIsGeneratedOnceAndKept(t *testing.T) {
	dir := t.TempDir()
	first, err := peerName("", dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := peerName("", dir)
	if err != nil || again != first {
		t.Fatalf("second start got %v (%v), want %v", again, err, first)
	}
	b, _ := os.ReadFile(filepath.Join(dir, nameFile))
	if strings.TrimSpace(string(b)) != first.String() {
		t.Fatalf("persisted %q, want %q", b, first)
	}
	// Locally administered unicast, like a MAC we made up should be.
	if first>>40&0x03 != 0x02 {
		t.Fatalf("generated name %v is not a locally administered unicast MAC", first)
	}
	other, _ := peerName("", t.TempDir())
	if other == first {
		t.Fatal("two data dirs got the same generated name")
	}
}

func TestPeerNameFromFlagAndErrors(t *testing.T) {
	name, err := peerName("aa:bb:cc:dd:ee:01", "")
	if err != nil || name.String() != "aa:bb:cc:dd:ee:01" {
		t.Fatalf("got %v, %v", name, err)
	}
	if _, err := peerName("not-a-mac", ""); err == nil {
		t.Fatal("bad --name accepted")
	}
	if _, err := peerName("", ""); err == nil {
		t.Fatal("no name and no data dir accepted")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, nameFile), []byte("garbage\n"), 0o600)
	if _, err := peerName("", dir); err == nil || !strings.Contains(err.Error(), nameFile) {
		t.Fatalf("corrupt name file: %v", err)
	}
}

func TestValidatePeers(t *testing.T) {
	for _, ok := range []string{"10.0.0.1", "10.0.0.1:6783", "weave-1", "[fd00::1]:6783"} {
		if err := ValidatePeers([]string{ok}); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ":6783", "10.0.0.1:notaport", "10.0.0.1:1:2"} {
		if err := ValidatePeers([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestExplain(t *testing.T) {
	got := Explain("->[1.2.3.4:6783] connection shutting down due to error during handshake: read tcp: connection reset by peer")
	if !strings.Contains(got, "password mismatch") {
		t.Fatalf("not explained: %q", got)
	}
	if Explain("plain") != "plain" {
		t.Fatal("unrelated message changed")
	}
}

func TestStretchPassword(t *testing.T) {
	a, b := StretchPassword([]byte("correct horse")), StretchPassword([]byte("correct horse"))
	if len(a) != 32 || string(a) != string(b) {
		t.Fatalf("not a deterministic 32-byte key: %x %x", a, b)
	}
	if string(StretchPassword([]byte("correct horsf"))) == string(a) {
		t.Fatal("two passwords, one key")
	}
	if _, err := New(Config{Name: "aa:bb:cc:dd:ee:01", NickName: "x", Password: []byte("p"), PasswordKDF: "md5"}, nil); err == nil {
		t.Fatal("an unknown KDF was accepted")
	}
}
