package api

import (
	"context"
	"net/http"
	"net/url"
)

// Address management for other programs (the CNI plugins): addresses held
// by an owner string that the caller chooses, with no interface plugged in
// by weaved. These endpoints complete the list in the package doc:
//
//	POST /ipam/allocate          IPAMRequest → IPAMResponse (the owner's address in Subnet, the same one on every retry)
//	POST /ipam/release           IPAMRequest (Owner only) → {} (every address of the owner; none held is success)
//	GET  /ipam/owners?prefix=P   → []IPAMOwner (owners holding addresses here whose name starts with P)

// IPAMRequest names an owner and, for an allocation, the subnet to take
// the address from (empty: the default subnet).
type IPAMRequest struct {
	Owner  string
	Subnet string `json:",omitempty"`
}

// IPAMResponse is an allocated address in CIDR form (the subnet's length).
type IPAMResponse struct {
	Addr string
}

// IPAMOwner is an owner and the addresses it holds on this peer.
type IPAMOwner struct {
	Owner string
	Addrs []string
}

// MaxOwnerLen bounds an owner string: the API refuses longer ones.
const MaxOwnerLen = 512

// IPAMAllocate returns owner's address in subnet, allocating one if it
// holds none there.
func (c *Client) IPAMAllocate(ctx context.Context, req IPAMRequest) (*IPAMResponse, error) {
	var r IPAMResponse
	return &r, c.do(ctx, http.MethodPost, "/ipam/allocate", req, &r)
}

// IPAMRelease frees every address owner holds.
func (c *Client) IPAMRelease(ctx context.Context, owner string) error {
	return c.do(ctx, http.MethodPost, "/ipam/release", IPAMRequest{Owner: owner}, nil)
}

// IPAMOwners lists the owners holding addresses on this peer whose name
// starts with prefix.
func (c *Client) IPAMOwners(ctx context.Context, prefix string) ([]IPAMOwner, error) {
	var r []IPAMOwner
	return r, c.do(ctx, http.MethodGet, "/ipam/owners?prefix="+url.QueryEscape(prefix), nil, &r)
}
