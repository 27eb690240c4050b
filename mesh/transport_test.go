package mesh

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// countingWriter counts the writes that reach it.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// Frames queued between flushes go out in one write, a frame larger than
// the batch goes out behind them, and the reader gets each back whole.
func TestLengthFramesBatched(t *testing.T) {
	out := &countingWriter{}
	w := &lengthWriter{w: out}
	small := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte("b"), 1000)}
	for _, m := range small {
		if err := w.writeFrame(m); err != nil {
			t.Fatal(err)
		}
	}
	if out.writes != 0 {
		t.Fatalf("%d writes before flush, want 0", out.writes)
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	if out.writes != 1 {
		t.Fatalf("%d writes for three small frames, want 1", out.writes)
	}
	big := bytes.Repeat([]byte("c"), batchedBytes+1)
	// Enough small frames to fill the batch, then the big one.
	var sent [][]byte
	sent = append(sent, small...)
	for range batchedBytes / 1000 {
		m := bytes.Repeat([]byte("d"), 996)
		sent = append(sent, m)
		if err := w.writeFrame(m); err != nil {
			t.Fatal(err)
		}
	}
	sent = append(sent, big)
	if err := w.writeFrame(big); err != nil {
		t.Fatal(err)
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}

	r := newLengthReader(&out.Buffer, maxFrame)
	for i, want := range sent {
		got, err := r.readFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(want))
		}
	}
	if _, err := r.readFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}
