package crypto

// ReplayWindow accepts each counter value at most once, and none older than
// ReplayWindowSize below the highest accepted. The zero value is ready. It
// is not safe for concurrent use.
type ReplayWindow struct {
	top  uint64 // highest accepted counter + 1; 0 when nothing accepted yet
	bits [replayWords]uint64
}

// ReplayWindowSize is how far behind the newest datagram an older one may
// arrive and still be accepted: generous, because a fast link reorders a
// burst across cores and queues.
const ReplayWindowSize = (replayWords - 1) * 64

const replayWords = 128

// Fresh reports whether c would be accepted, without recording it: check
// before the costly authentication, Accept after it.
func (w *ReplayWindow) Fresh(c uint64) bool {
	if c >= w.top {
		return true
	}
	if w.top-c > ReplayWindowSize {
		return false
	}
	return w.bits[(c/64)%replayWords]&(1<<(c%64)) == 0
}

// Accept records c and reports whether it was fresh.
func (w *ReplayWindow) Accept(c uint64) bool {
	if !w.Fresh(c) {
		return false
	}
	if c >= w.top {
		// Slide: clear the words after the highest accepted one, up to c's.
		if w.top > 0 {
			oldWord, newWord := (w.top-1)/64, c/64
			if newWord-oldWord >= replayWords {
				w.bits = [replayWords]uint64{}
			} else {
				for i := oldWord + 1; i <= newWord; i++ {
					w.bits[i%replayWords] = 0
				}
			}
		}
		w.top = c + 1
	}
	w.bits[(c/64)%replayWords] |= 1 << (c % 64)
	return true
}
