module weavenet

go 1.26.8

require (
	github.com/urfave/cli/v3 v3.14.0
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	github.com/weaveworks/mesh v0.0.0-20191105120815-58dbcc3e8e63
	golang.org/x/sys v0.50.0
)

require (
	github.com/miekg/dns v1.1.73 // indirect
	go.etcd.io/bbolt v1.4.3
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/net v0.62.0 // indirect
)
