package fastdp

import "encoding/binary"

// ProbeEtherType marks probe frames: IEEE's EtherType for local
// experiments, which nothing on a container network sends.
const ProbeEtherType = 0x88b5

// ProbeDst is the destination of probe frames: a link-local group address
// that bridges neither forward nor flood, but pass up on the port the frame
// arrived on (the VXLAN device), where ReadProbe reads it.
var ProbeDst = [6]byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}

// Overhead is what VXLAN adds to an Ethernet frame on an IPv4 underlay:
// outer IPv4, UDP and VXLAN headers and the inner Ethernet header.
const Overhead = 20 + 8 + vxlanHdrLen + 14

const vxlanHdrLen = 8

// putVXLANHeader writes RFC 7348's header: the I flag, then the VNI.
func putVXLANHeader(b []byte, vni uint32) {
	binary.BigEndian.PutUint32(b[0:], 0x08000000)
	binary.BigEndian.PutUint32(b[4:], vni<<8)
}

// DeviceName is the VXLAN device weaved makes for the bridge named bridge.
func DeviceName(bridge string) string {
	return "vwvx-" + bridge[:min(len(bridge), 10)]
}
