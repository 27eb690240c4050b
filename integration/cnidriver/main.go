// Command cnidriver runs CNI operations through libcni, as a container
// runtime would, for the CNI integration tests. The tests run it inside a
// host's network namespace, so that the plugins libcni executes see that
// host's weaved and bridge.
//
//	cnidriver [flags] add|check|del CONTAINER-ID NETNS IFNAME   (add prints the result)
//	cnidriver [flags] status
//	cnidriver [flags] gc [CONTAINER-ID/IFNAME...]               (the valid attachments)
//	cnidriver [flags] owners                                    (weaved's CNI allocations, one "OWNER ADDR..." a line)
//
// Flags: -conflist FILE, -path DIR (the CNI bin dir), -cache DIR (libcni's
// cache of results), -portmap HOST:CONTAINER (publish a TCP port),
// -timeout D.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"weavenet/api"
	"weavenet/cni"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cnidriver:", err)
		os.Exit(1)
	}
}

func run() error {
	conflist := flag.String("conflist", "", "network configuration list")
	path := flag.String("path", "", "CNI bin dir")
	cache := flag.String("cache", "", "libcni cache dir")
	portmap := flag.String("portmap", "", "HOSTPORT:CONTAINERPORT to publish (tcp)")
	timeout := flag.Duration("timeout", 90*time.Second, "time limit")
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		return fmt.Errorf("no operation")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if args[0] == "owners" {
		owners, err := api.NewClient(api.AddrFromEnv()).IPAMOwners(ctx, cni.OwnerPrefix)
		if err != nil {
			return err
		}
		for _, o := range owners {
			fmt.Println(o.Owner, strings.Join(o.Addrs, " "))
		}
		return nil
	}
	list, err := libcni.ConfListFromFile(*conflist)
	if err != nil {
		return err
	}
	c := libcni.NewCNIConfigWithCacheDir([]string{*path}, *cache, nil)
	switch args[0] {
	case "status":
		return c.GetStatusNetworkList(ctx, list)
	case "gc":
		var valid []types.GCAttachment
		for _, a := range args[1:] {
			id, ifName, ok := strings.Cut(a, "/")
			if !ok {
				return fmt.Errorf("attachment %q: want CONTAINER-ID/IFNAME", a)
			}
			valid = append(valid, types.GCAttachment{ContainerID: id, IfName: ifName})
		}
		return c.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: valid})
	case "add", "check", "del":
		if len(args) != 4 {
			return fmt.Errorf("%s: want CONTAINER-ID NETNS IFNAME", args[0])
		}
		rt := &libcni.RuntimeConf{ContainerID: args[1], NetNS: args[2], IfName: args[3]}
		if *portmap != "" {
			h, p, ok := strings.Cut(*portmap, ":")
			hp, err1 := strconv.Atoi(h)
			cp, err2 := strconv.Atoi(p)
			if !ok || err1 != nil || err2 != nil {
				return fmt.Errorf("-portmap %q: want HOSTPORT:CONTAINERPORT", *portmap)
			}
			rt.CapabilityArgs = map[string]any{"portMappings": []map[string]any{{"hostPort": hp, "containerPort": cp, "protocol": "tcp"}}}
		}
		switch args[0] {
		case "add":
			res, err := c.AddNetworkList(ctx, list, rt)
			if err != nil {
				return err
			}
			return res.Print()
		case "check":
			return c.CheckNetworkList(ctx, list, rt)
		default:
			return c.DelNetworkList(ctx, list, rt)
		}
	}
	return fmt.Errorf("unknown operation %q", args[0])
}
