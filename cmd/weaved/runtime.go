package main

import (
	"os"
	"runtime"
	"strings"
	"syscall"
)

// tuneRuntime fits the Go runtime to a daemon whose work is mostly the
// kernel's and whose latency is mostly wake-ups. It runs first in main,
// before the flags are parsed; --low-latency is applied once they are
// (lowLatency).
func tuneRuntime() {
	smallMachineProcs()
}

// lowLatencyEnv sets --low-latency, as the flag's source.
const lowLatencyEnv = "WEAVE_LOW_LATENCY"

// lowLatency says whether to keep the runtime's monitor awake (see
// keepMonitorAwake): as --low-latency says if given, otherwise only when
// this peer's unicast frames cross the sleeve, i.e. when it can have no fast
// datapath (sleeveWhy, from fastdpOff). With the fast datapath the kernel
// carries them without waking the daemon, and the monitor's 100 wake-ups a
// second would buy nothing: at 50 peers they were a third of an idle
// daemon's CPU.
func lowLatency(set, on bool, sleeveWhy string) bool {
	if set {
		return on
	}
	return sleeveWhy != ""
}

// smallMachineProcs runs the daemon on one Go processor on a machine of one
// or two CPUs, unless GOMAXPROCS says otherwise. Most of the daemon's work
// there is the kernel's (TAP reads and writes, UDP, the containers' own
// stacks), which needs the other CPU; a second Go processor only adds the
// scheduler's spinning and thread hand-offs between the send and receive
// loops. Measured on a 2-CPU VM: +20% single-stream throughput, +30%
// encrypted, no loss with traffic both ways or several streams.
func smallMachineProcs() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.NumCPU() <= 2 {
		runtime.GOMAXPROCS(1)
	}
}

// keepMonitorAwake re-executes the daemon with GODEBUG's schedtrace set to
// its longest period (24.8 days), unless GODEBUG already sets it. It
// trades idle CPU for wake-up latency. It runs once the configuration is
// known to be valid and before anything is opened or logged, so the new
// process starts from the same point.
//
// When every Go processor is idle, the runtime's monitor thread sleeps
// until one wakes again, and waking it is then part of every wake-up: a
// futex call and a cross-CPU wake-up before the first frame is read. A
// ping crosses three daemon wake-ups, each paying this. With schedtrace set
// the monitor never sleeps that deep but polls every 10 ms. On a 2-CPU VM
// the overlay's ping RTT went from 0.55 to 0.32 ms. The price: 100
// wake-ups a second: an idle daemon with one peer uses 0.18% of a CPU
// instead of 0.05%; with 25 peers, which wake it every half second anyway,
// no measurable difference (README, Scale). Also a line of scheduler
// statistics goes to standard error every 24.8 days of the machine's
// uptime, and a crash's stack traces come with a scheduler dump. There is
// no API to change this from inside the process, hence the re-execution;
// if it fails, the daemon runs as is.
func keepMonitorAwake() {
	env, ok := monitorEnv(runtime.GOOS, os.Environ())
	if !ok {
		return
	}
	// By path rather than /proc/self/exe, which would rename the process
	// "exe" for ps and pgrep.
	self, err := os.Executable()
	if err != nil {
		return
	}
	_ = syscall.Exec(self, os.Args, env)
}

// monitorEnv returns environ with schedtrace added to GODEBUG, keeping the
// user's other GODEBUG settings, and false if there is nothing to do.
func monitorEnv(goos string, environ []string) ([]string, bool) {
	if goos != "linux" {
		return nil, false
	}
	var godebug string
	env := []string{""} // GODEBUG's place: only one may be set
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			godebug = v
			continue
		}
		env = append(env, kv)
	}
	if strings.Contains(godebug, "schedtrace=") {
		return nil, false
	}
	if godebug != "" {
		godebug += ","
	}
	env[0] = "GODEBUG=" + godebug + "schedtrace=2147483647"
	return env, true
}
