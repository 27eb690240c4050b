package tun

import (
	"encoding/binary"
	"errors"
)

// VirtioNetHdrLen is the size of struct virtio_net_hdr without the
// num_buffers field; it is what TUNSETVNETHDRSZ is set to.
const VirtioNetHdrLen = 10

// Flag and GSO type values of struct virtio_net_hdr, from
// include/uapi/linux/virtio_net.h.
const (
	// VirtioNetHdrFNeedsCsum: the checksum at CsumStart+CsumOffset is only
	// the pseudo-header sum; whoever emits the frame must finish it.
	VirtioNetHdrFNeedsCsum = 1
	// VirtioNetHdrFDataValid: the checksum has already been verified.
	VirtioNetHdrFDataValid = 2

	VirtioNetHdrGSONone  = 0
	VirtioNetHdrGSOTCPv4 = 1
	VirtioNetHdrGSOUDP   = 3
	VirtioNetHdrGSOTCPv6 = 4
	// VirtioNetHdrGSOECN is or-ed into GSOType when the TCP super-frame
	// had CWR set, so segmentation must keep ECN semantics.
	VirtioNetHdrGSOECN = 0x80
)

// ErrShortVirtioNetHdr is returned by Decode when the buffer cannot hold a
// header; on a TAP opened with VnetHdr that means the kernel and this
// process disagree on the header size, so the frame should be dropped.
var ErrShortVirtioNetHdr = errors.New("tun: buffer shorter than virtio_net_hdr")

// VirtioNetHdr is struct virtio_net_hdr, the metadata that precedes every
// frame on a device opened with VnetHdr.
//
// On the wire the fields are little-endian. OpenTAP sets TUNSETVNETLE so
// that this holds on big-endian hosts too, where the kernel would otherwise
// use host order for this legacy header.
type VirtioNetHdr struct {
	Flags      uint8  // VirtioNetHdrF* bits
	GSOType    uint8  // VirtioNetHdrGSO* value, possibly or-ed with VirtioNetHdrGSOECN
	HdrLen     uint16 // length of the L2+L3+L4 headers of a GSO frame
	GSOSize    uint16 // payload bytes per segment once the frame is split
	CsumStart  uint16 // offset from the frame start where checksumming starts
	CsumOffset uint16 // offset from CsumStart where the checksum is stored
}

// Decode parses the first VirtioNetHdrLen bytes of b into h. It does not
// retain b. It returns ErrShortVirtioNetHdr if b is too short and never
// allocates.
func (h *VirtioNetHdr) Decode(b []byte) error {
	if len(b) < VirtioNetHdrLen {
		return ErrShortVirtioNetHdr
	}
	h.Flags = b[0]
	h.GSOType = b[1]
	h.HdrLen = binary.LittleEndian.Uint16(b[2:4])
	h.GSOSize = binary.LittleEndian.Uint16(b[4:6])
	h.CsumStart = binary.LittleEndian.Uint16(b[6:8])
	h.CsumOffset = binary.LittleEndian.Uint16(b[8:10])
	return nil
}

// Encode writes h into the first VirtioNetHdrLen bytes of b, typically the
// headroom in front of a frame about to be written to a TAP. It does not
// retain b and never allocates. It panics if b is shorter than
// VirtioNetHdrLen: the caller sized that headroom, so a short buffer is a
// programming error, not a runtime condition.
func (h VirtioNetHdr) Encode(b []byte) {
	_ = b[VirtioNetHdrLen-1] // one bounds check instead of five
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:4], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:6], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:8], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:10], h.CsumOffset)
}
