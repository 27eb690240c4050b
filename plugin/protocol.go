package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The JSON documents of libnetwork's remote driver and remote IPAM
// protocols, as far as this plugin reads or writes them. Field names are
// the protocol's. Requests are decoded leniently about fields we do not
// know (newer engines add some) and strictly about the ones we use.

// maxBody bounds a request body: the largest real one (CreateNetwork with
// its options and labels) is a few KiB.
const maxBody = 64 << 10

// maxID bounds the network and endpoint IDs the engine sends (64 hex
// digits in practice).
const maxID = 128

type errResponse struct {
	Err string
}

type activateResponse struct {
	Implements []string
}

type capabilitiesResponse struct {
	Scope             string
	ConnectivityScope string
}

type ipamData struct {
	AddressSpace string
	Pool         string
	Gateway      string
	AuxAddresses map[string]string
}

type createNetworkRequest struct {
	NetworkID string
	Options   map[string]any
	IPv4Data  []ipamData
	IPv6Data  []ipamData
}

type networkRequest struct {
	NetworkID string
}

type endpointInterface struct {
	Address     string `json:",omitempty"`
	AddressIPv6 string `json:",omitempty"`
	MacAddress  string `json:",omitempty"`
}

type createEndpointRequest struct {
	NetworkID  string
	EndpointID string
	Interface  *endpointInterface
	Options    map[string]any
}

type createEndpointResponse struct {
	// Interface stays nil: the engine gave the address (from our IPAM),
	// and must not hear back a field it supplied; the MAC the pair gets
	// is the engine's, or else one it need not know.
	Interface *endpointInterface `json:",omitempty"`
}

type endpointRequest struct {
	NetworkID  string
	EndpointID string
}

type endpointInfoResponse struct {
	Value map[string]any
}

type joinRequest struct {
	NetworkID  string
	EndpointID string
	SandboxKey string
	Options    map[string]any
}

type interfaceName struct {
	SrcName   string
	DstPrefix string
}

type staticRoute struct {
	Destination string
	RouteType   int    // 1: connected (no next hop)
	NextHop     string `json:",omitempty"`
}

type joinResponse struct {
	InterfaceName interfaceName
	Gateway       string        `json:",omitempty"`
	StaticRoutes  []staticRoute `json:",omitempty"`
}

type ipamCapabilitiesResponse struct {
	RequiresMACAddress    bool
	RequiresRequestReplay bool
}

type addressSpacesResponse struct {
	LocalDefaultAddressSpace  string
	GlobalDefaultAddressSpace string
}

type requestPoolRequest struct {
	AddressSpace string
	Pool         string
	SubPool      string
	Options      map[string]string
	V6           bool
}

type requestPoolResponse struct {
	PoolID string
	Pool   string
	Data   map[string]string
}

type releasePoolRequest struct {
	PoolID string
}

type requestAddressRequest struct {
	PoolID  string
	Address string
	Options map[string]string
}

type requestAddressResponse struct {
	Address string
	Data    map[string]string
}

type releaseAddressRequest struct {
	PoolID  string
	Address string
}

// errBadRequest marks a request that could not be decoded: the protocol
// wants an HTTP error status for those, not an Err document.
var errBadRequest = errors.New("bad request")

// decode reads one JSON document of at most maxBody bytes into v. An empty
// body is an empty document (Activate and GetCapabilities come without
// one); anything after the document is refused.
func decode(r io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return fmt.Errorf("%w: reading body: %v", errBadRequest, err)
	}
	if len(b) > maxBody {
		return fmt.Errorf("%w: body larger than %d bytes", errBadRequest, maxBody)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON document", errBadRequest)
	}
	return nil
}

// checkID refuses an ID that is empty, unbounded, or not the engine's
// alphanumeric form: they end up in logs and interface names.
func checkID(what, id string) error {
	if id == "" || len(id) > maxID {
		return fmt.Errorf("%w: %s: want 1-%d characters, got %d", errBadRequest, what, maxID, len(id))
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return fmt.Errorf("%w: %s %q: want letters and digits", errBadRequest, what, id)
		}
	}
	return nil
}
