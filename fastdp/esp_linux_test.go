//go:build linux

package fastdp

import (
	"os"
	"testing"
)

// TestProbeESP runs the probe: where the kernel has ESP it must say so;
// where it lacks it the test skips and says why, as the ESP datapath tests
// must.
func TestProbeESP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a scratch network namespace)")
	}
	if err := ProbeESP(); err != nil {
		t.Skipf("kernel lacks IPsec ESP, so encrypted links stay on the sleeve: %v", err)
	}
	t.Log("kernel has IPsec ESP")
}
