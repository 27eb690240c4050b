package docker

import (
	"context"
	"fmt"

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
