package main

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/camd/camd/sdk/sdktest"
)

// socketsConfigEnv passes TestSocketsStayOnListen's config block to the
// plugin process, TestSocketsPlugin.
const socketsConfigEnv = "WEBRTC_SOCKETS_CONFIG"

// TestSocketsPlugin is the plugin whose sockets TestSocketsStayOnListen
// reads, in a process of its own so that every socket in it is the
// plugin's. It feeds one camera until the parent test ends.
func TestSocketsPlugin(t *testing.T) {
	if !sdktest.InChild(t) {
		t.Skip("the plugin process of TestSocketsStayOnListen, run by it")
	}
	h := sdktest.New(t, &WebRTC{})
	urls, err := h.Start("rtc", []string{"cam"}, os.Getenv(socketsConfigEnv))
	if err != nil {
		t.Fatal(err)
	}
	feed(t, h, "cam", simFrames(t, 160, 120, 5))
	sdktest.Ready(t, strings.TrimSuffix(urls[0], "/"))
}

// TestSocketsStayOnListen: ICE gathers on the address of listen, so a
// plugin listening on 127.0.0.1 holds no socket on any other address, and
// no mDNS socket (port 5353) unless ice.mdns asks for one; ice.interfaces
// widens it. The plugin runs in a child process with a viewer connected
// (so ICE has gathered and is in use); the test maps the child's socket
// inodes from /proc/<pid>/fd to the local addresses in
// /proc/<pid>/net/{udp,udp6,tcp,tcp6}.
func TestSocketsStayOnListen(t *testing.T) {
	lan, lanIface := nonLoopbackIPv4(t)
	port := freeUDPPort(t)
	loopback := onIP("127.0.0.1")
	tests := []struct {
		name   string
		config string
		// allowed holds for every socket of the plugin; nil: any socket.
		allowed func(socket) bool
		// want holds for at least one: what shows that the check sees the
		// sockets it is about.
		want     func(socket) bool
		mdns     bool // sockets on port 5353 are wanted (else forbidden)
		needsLAN bool // the case needs an address beyond loopback
	}{
		{name: "loopback", config: "listen: 127.0.0.1:0\n", allowed: loopback, want: isUDP},
		{name: "loopback, one UDP port", config: fmt.Sprintf("listen: 127.0.0.1:0\nice: {udp_ports: \"%d\"}\n", port),
			allowed: loopback, want: both(isUDP, onPorts(port, port))},
		{name: "loopback, a port range", config: "listen: 127.0.0.1:0\nice: {udp_ports: \"41000-41100\"}\n",
			allowed: loopback, want: both(isUDP, onPorts(41000, 41100))},
		{name: "one LAN address", config: "listen: " + lan + ":0\n", allowed: onIP(lan), want: isUDP, needsLAN: true},
		{name: "loopback with mDNS", config: "listen: 127.0.0.1:0\nice: {mdns: true}\n", allowed: either(loopback, mdnsSocket),
			want: isUDP, mdns: true},
		{name: "loopback, ice.interfaces", config: "listen: 127.0.0.1:0\nice: {interfaces: [" + lanIface + "]}\n",
			allowed: either(loopback, onInterface(t, lanIface)), want: both(isUDP, onIP(lan)), needsLAN: true},
		{name: "every address", config: "listen: 0.0.0.0:0\n", want: both(isUDP, onIP(lan)), needsLAN: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needsLAN && lan == "" {
				t.Skip("this machine has no IPv4 address beyond loopback")
			}
			c := sdktest.StartChild(t, "TestSocketsPlugin", socketsConfigEnv+"="+tt.config)
			v, _, err := dialWHEP(t, reachable(t, c.Ready)+"/cameras/cam/whep")
			if err != nil {
				t.Fatal(err)
			}
			v.waitFrames(t, 3, 20*time.Second)

			socks := processSockets(t, c.Pid)
			var wanted, mdns int
			for _, s := range socks {
				if tt.allowed != nil && !tt.allowed(s) {
					t.Errorf("the plugin holds a socket on %s", s)
				}
				if tt.want(s) {
					wanted++
				}
				if s.addr.Port() == 5353 {
					mdns++
				}
			}
			if wanted == 0 {
				t.Errorf("no socket of the kind this case is about; sockets %v", socks)
			}
			if tt.mdns != (mdns > 0) {
				t.Errorf("%d sockets on port 5353, want them: %v; sockets %v", mdns, tt.mdns, socks)
			}
		})
	}
}

// socket is one of a process's inet sockets.
type socket struct {
	proto string // udp, udp6, tcp, tcp6
	addr  netip.AddrPort
}

func (s socket) String() string { return s.proto + " " + s.addr.String() }

// processSockets returns the inet sockets process pid holds: the inodes of
// its open sockets (/proc/<pid>/fd), looked up in the socket tables of
// its network namespace (/proc/<pid>/net/*), which list every process's.
func processSockets(t *testing.T, pid int) []socket {
	t.Helper()
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil {
			if ino, ok := strings.CutPrefix(link, "socket:["); ok {
				inodes[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	var out []socket
	for _, proto := range []string{"udp", "udp6", "tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			addr, err := parseProcAddr(fields[1])
			if err != nil {
				t.Fatalf("%s: %q: %v", proto, sc.Text(), err)
			}
			out = append(out, socket{proto: proto, addr: addr})
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// parseProcAddr parses a local_address of /proc/net/{udp,tcp}[6]: the
// address as 32-bit words, each printed in hex in the host's byte order,
// then ":" and the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(hexIP)
	if !ok || err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	ip := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

func isUDP(s socket) bool { return s.proto == "udp" || s.proto == "udp6" }

// onIP is a socket on ip, any port.
func onIP(ip string) func(socket) bool {
	want := netip.MustParseAddr(ip)
	return func(s socket) bool { return s.addr.Addr() == want }
}

// onPorts is a socket on a port from lo to hi.
func onPorts(lo, hi int) func(socket) bool {
	return func(s socket) bool { return int(s.addr.Port()) >= lo && int(s.addr.Port()) <= hi }
}

// onInterface is a socket on one of the addresses of interface name.
func onInterface(t *testing.T, name string) func(socket) bool {
	t.Helper()
	if name == "" {
		return func(socket) bool { return false } // the case is skipped
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	return func(s socket) bool {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(s.addr.Addr().AsSlice()) {
				return true
			}
		}
		return false
	}
}

// mdnsSocket is a socket mDNS binds on every interface: port 5353, and one
// more to send queries from, on the unspecified address (or a multicast
// group).
func mdnsSocket(s socket) bool { return s.addr.Addr().IsUnspecified() || s.addr.Addr().IsMulticast() }

func either(a, b func(socket) bool) func(socket) bool {
	return func(s socket) bool { return a(s) || b(s) }
}

func both(a, b func(socket) bool) func(socket) bool {
	return func(s socket) bool { return a(s) && b(s) }
}

// nonLoopbackIPv4 returns an IPv4 address of this machine beyond loopback,
// which the tests listen on as a LAN address, and its interface; "" if it
// has none.
func nonLoopbackIPv4(t *testing.T) (ip, iface string) {
	t.Helper()
	ifcs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifcs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
				return n.IP.String(), ifc.Name
			}
		}
	}
	return "", ""
}

// freeUDPPort returns a UDP port free on 127.0.0.1 a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.LocalAddr().(*net.UDPAddr).Port
}

// reachable returns a plugin's base URL as a client on this machine
// reaches it: a plugin listening on every address ("[::]:port") is
// reached over loopback.
func reachable(t *testing.T, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	}
	return u.String()
}
