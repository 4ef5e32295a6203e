package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// TestListenScope: viewers' ICE gathers on listen's address (a loopback
// address standing for its family's loopback), on every address for a
// wildcard listen, and on the named interfaces (and lo) when
// ice.interfaces is set.
func TestListenScope(t *testing.T) {
	tests := []struct {
		listen     string
		interfaces []string
		keep, drop []string // addresses; "if:name" for interfaces
		v4, v6     bool
		loopback   bool
		localOnly  bool // only loopback: nothing beyond this host reaches it
	}{
		{listen: "127.0.0.1:8082", keep: []string{"127.0.0.1"}, drop: []string{"192.0.2.2", "::1", "fd00::2"}, v4: true, loopback: true, localOnly: true},
		{listen: "127.0.0.2:8082", keep: []string{"127.0.0.1"}, drop: []string{"192.0.2.2", "::1"}, v4: true, loopback: true, localOnly: true},
		{listen: "[::1]:8082", keep: []string{"::1"}, drop: []string{"127.0.0.1", "fd00::2"}, v6: true, loopback: true, localOnly: true},
		{listen: "192.0.2.2:8082", keep: []string{"192.0.2.2"}, drop: []string{"127.0.0.1", "192.0.2.3", "fd00::2"}, v4: true},
		{listen: "[fd00::2]:8082", keep: []string{"fd00::2"}, drop: []string{"::1", "192.0.2.2"}, v6: true},
		{listen: "0.0.0.0:8082", keep: []string{"127.0.0.1", "192.0.2.2", "fd00::2", "if:eth0"}, v4: true, v6: true, loopback: true},
		{listen: "[::]:8082", keep: []string{"::1", "192.0.2.2", "if:wlan0"}, v4: true, v6: true, loopback: true},
		{listen: "127.0.0.1:8082", interfaces: []string{"eth0"}, keep: []string{"if:eth0", "if:lo", "192.0.2.2"}, drop: []string{"if:wlan0"},
			v4: true, v6: true, loopback: true},
	}
	for _, tt := range tests {
		name := tt.listen
		if len(tt.interfaces) > 0 {
			name += " interfaces " + strings.Join(tt.interfaces, ",")
		}
		t.Run(name, func(t *testing.T) {
			addr, err := net.ResolveTCPAddr("tcp", tt.listen)
			if err != nil {
				t.Fatal(err)
			}
			s := listenScope(addr, tt.interfaces)
			if s.v4 != tt.v4 || s.v6 != tt.v6 || s.loopback != tt.loopback || s.localOnly != tt.localOnly {
				t.Errorf("v4 %v v6 %v loopback %v local only %v, want %v %v %v %v",
					s.v4, s.v6, s.loopback, s.localOnly, tt.v4, tt.v6, tt.loopback, tt.localOnly)
			}
			kept := func(a string) bool {
				if name, ok := strings.CutPrefix(a, "if:"); ok {
					return s.keepIface == nil || s.keepIface(name)
				}
				return s.keepIP == nil || s.keepIP(net.ParseIP(a))
			}
			for _, a := range tt.keep {
				if !kept(a) {
					t.Errorf("%s (%s) leaves out %s", tt.listen, s.desc, a)
				}
			}
			for _, a := range tt.drop {
				if kept(a) {
					t.Errorf("%s (%s) keeps %s", tt.listen, s.desc, a)
				}
			}
		})
	}
}

// TestRouteScope: a WHIP publisher gathers on the address its route to
// the server starts from.
func TestRouteScope(t *testing.T) {
	lan, _ := nonLoopbackIPv4(t)
	tests := []struct {
		host string
		want string // the one address kept; "" for an error
	}{
		{"127.0.0.1", "127.0.0.1"},
		{"::1", "::1"},
		{lan, lan}, // this host's own LAN address: reached from it
		{"nowhere.invalid", ""},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			if tt.host == "" {
				t.Skip("this machine has no IPv4 address beyond loopback")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := routeScope(ctx, tt.host)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("route to %s: %s, want an error", tt.host, s.desc)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.desc != tt.want || !s.keepIP(net.ParseIP(tt.want)) {
				t.Fatalf("route to %s gathers on %s, want %s", tt.host, s.desc, tt.want)
			}
		})
	}
}

// TestViewerWithMDNSCandidates: with ice.mdns off (the default), a viewer
// that hides its addresses behind .local names, as browsers do, still
// plays: its checks arrive from its real address.
func TestViewerWithMDNSCandidates(t *testing.T) {
	h, base := start(t, []string{"cam"}, "")
	feed(t, h, "cam", simFrames(t, 160, 120, 5))
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeQueryAndGather)
	v, _, err := dialWHEPSettings(t, base+"/cameras/cam/whep", nil, se)
	if err != nil {
		t.Fatal(err)
	}
	offer := v.pc.LocalDescription().SDP
	for _, line := range strings.Split(offer, "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, "a=candidate:") && len(f) > 4 && !strings.HasSuffix(f[4], ".local") {
			t.Fatalf("the viewer's offer has a candidate with an address: %s", line)
		}
	}
	if !strings.Contains(offer, ".local") {
		t.Fatalf("the viewer's offer has no .local candidate (no mDNS here?):\n%s", offer)
	}
	v.waitFrames(t, 5, 20*time.Second)
}
