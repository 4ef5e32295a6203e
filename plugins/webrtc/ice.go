package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
)

// iceScope is where ICE gathers candidates, and so where the plugin opens
// UDP sockets: the addresses (or interfaces) a peer may reach it on.
// Viewers get the scope of listen (nothing beyond what the HTTP side
// exposes); a WHIP publisher, which dials out, the scope of its route.
type iceScope struct {
	keepIP    func(net.IP) bool // nil: every address
	keepIface func(string) bool // nil: every interface
	v4, v6    bool              // the address families gathered on
	loopback  bool              // loopback addresses count (pion leaves them out by default)
	localOnly bool              // loopback addresses only: no peer beyond this host
	desc      string            // for the log: "127.0.0.1", "every address", …
}

// everyAddress is every address of every interface, loopback included:
// viewers on this host (a kiosk browser, a local recorder) connect over
// loopback, which pion leaves out by default.
func everyAddress() iceScope {
	return iceScope{v4: true, v6: true, loopback: true, desc: "every address"}
}

// onInterfaces is the named interfaces' addresses, and loopback's.
func onInterfaces(names []string) iceScope {
	return iceScope{
		keepIface: func(name string) bool { return name == "lo" || slices.Contains(names, name) },
		v4:        true, v6: true, loopback: true,
		desc: "interfaces " + strings.Join(append(slices.Clone(names), "lo"), ", "),
	}
}

// onAddresses is these addresses only. A loopback address stands for its
// family's loopback (listen: 127.0.0.2 is served from 127.0.0.1, the
// address lo has).
func onAddresses(ips ...net.IP) iceScope {
	s := iceScope{keepIP: func(x net.IP) bool {
		for _, ip := range ips {
			if x.Equal(ip) || ip.IsLoopback() && x.IsLoopback() && (ip.To4() == nil) == (x.To4() == nil) {
				return true
			}
		}
		return false
	}}
	var names []string
	s.localOnly = true
	for _, ip := range ips {
		if ip.To4() != nil {
			s.v4 = true
		} else {
			s.v6 = true
		}
		s.loopback = s.loopback || ip.IsLoopback()
		s.localOnly = s.localOnly && ip.IsLoopback()
		names = append(names, ip.String())
	}
	s.desc = strings.Join(names, ", ")
	return s
}

// listenScope is where viewers' ICE gathers: the interfaces of
// ice.interfaces when set, else the address the HTTP server listens on
// (every address when that is 0.0.0.0 or ::).
func listenScope(listen net.Addr, interfaces []string) iceScope {
	if len(interfaces) > 0 {
		return onInterfaces(interfaces)
	}
	tcp, ok := listen.(*net.TCPAddr)
	if !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
		return everyAddress()
	}
	return onAddresses(tcp.IP)
}

// routeScope is where a WHIP publisher gathers: the local address this
// host sends from to reach host, per address family host resolves to.
// The SFU's media addresses are not known before its answer; they are
// reached the way its WHIP endpoint is (a LAN server over the LAN, a
// cloud one over the default route, one on this host over loopback).
func routeScope(ctx context.Context, host string) (iceScope, error) {
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil {
		return iceScope{}, err
	}
	var src []net.IP
	for _, ip := range ips {
		// A connected UDP socket sends nothing: connect(2) only picks the
		// route and so the source address.
		c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: ip, Port: 9})
		if err != nil {
			continue // no route in this family
		}
		local := c.LocalAddr().(*net.UDPAddr).IP
		c.Close()
		if !slices.ContainsFunc(src, local.Equal) {
			src = append(src, local)
		}
	}
	if len(src) == 0 {
		return iceScope{}, fmt.Errorf("no route to %s", host)
	}
	return onAddresses(src...), nil
}

// apply restricts a SettingEngine's gathering to the scope.
func (s iceScope) apply(se *webrtc.SettingEngine) {
	var nets []webrtc.NetworkType
	if s.v4 {
		nets = append(nets, webrtc.NetworkTypeUDP4)
	}
	if s.v6 {
		nets = append(nets, webrtc.NetworkTypeUDP6)
	}
	se.SetNetworkTypes(nets)
	se.SetIncludeLoopbackCandidate(s.loopback)
	if s.keepIP != nil {
		se.SetIPFilter(s.keepIP)
	}
	if s.keepIface != nil {
		se.SetInterfaceFilter(s.keepIface)
	}
}

// newUDPMux opens one UDP port on every address of the scope, shared by
// every peer connection (what a port forward needs), with n's sockets.
func (s iceScope) newUDPMux(port int, n transport.Net, log logging.LeveledLogger) (*ice.MultiUDPMuxDefault, error) {
	var nets []ice.NetworkType
	if s.v4 {
		nets = append(nets, ice.NetworkTypeUDP4)
	}
	if s.v6 {
		nets = append(nets, ice.NetworkTypeUDP6)
	}
	opts := []ice.UDPMuxFromPortOption{
		ice.UDPMuxFromPortWithNetworks(nets...), ice.UDPMuxFromPortWithNet(n), ice.UDPMuxFromPortWithLogger(log),
		// Every viewer's packets of a frame leave at once from this one
		// socket: room for them on a NIC slower than the burst (the
		// kernel caps it at net.core.wmem_max).
		ice.UDPMuxFromPortWithWriteBufferSize(4 << 20),
	}
	if s.loopback {
		opts = append(opts, ice.UDPMuxFromPortWithLoopback())
	}
	if s.keepIP != nil {
		opts = append(opts, ice.UDPMuxFromPortWithIPFilter(s.keepIP))
	}
	if s.keepIface != nil {
		opts = append(opts, ice.UDPMuxFromPortWithInterfaceFilter(s.keepIface))
	}
	return ice.NewMultiUDPMuxFromPort(port, opts...)
}
