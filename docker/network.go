package docker

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
)

// EndpointContainer finds the container an endpoint of a network belongs
// to, for the network plugin, which hears only of endpoints. The Engine
// lists an endpoint under its container once the container joined it, a
// moment after the plugin's Join answered: until then this gives an error
// wrapping ErrNotFound.
func (c *Client) EndpointContainer(ctx context.Context, networkID, endpointID string) (Container, error) {
	n, err := c.c.NetworkInspect(ctx, networkID, network.InspectOptions{})
	if err != nil {
		return Container{}, fmt.Errorf("docker network inspect %s: %w", ShortID(networkID), err)
	}
	for id, ep := range n.Containers {
		if ep.EndpointID == endpointID {
			return c.Resolve(ctx, id)
		}
	}
	return Container{}, fmt.Errorf("endpoint %s of network %s: %w", ShortID(endpointID), ShortID(networkID), ErrNotFound)
}

// NetworkEndpoint is a container's endpoint on a network.
type NetworkEndpoint struct {
	NetworkID   string
	EndpointID  string
	ContainerID string
	Addr        netip.Prefix // its IPv4 address; invalid if it has none
	MAC         string
}

// DriverEndpoints lists the endpoints of the containers on every network
// of a driver: what a network plugin that restarted has to pick up again.
func (c *Client) DriverEndpoints(ctx context.Context, driver string) ([]NetworkEndpoint, error) {
	nets, err := c.c.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("driver", driver))})
	if err != nil {
		return nil, fmt.Errorf("docker network ls: %w", err)
	}
	var out []NetworkEndpoint
	for _, n := range nets {
		if n.Driver != driver {
			continue
		}
		full, err := c.c.NetworkInspect(ctx, n.ID, network.InspectOptions{})
		if err != nil {
			return nil, fmt.Errorf("docker network inspect %s: %w", ShortID(n.ID), err)
		}
		for id, ep := range full.Containers {
			e := NetworkEndpoint{NetworkID: n.ID, EndpointID: ep.EndpointID, ContainerID: id, MAC: ep.MacAddress}
			e.Addr, _ = netip.ParsePrefix(ep.IPv4Address)
			out = append(out, e)
		}
	}
	return out, nil
}
