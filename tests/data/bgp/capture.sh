#!/usr/bin/env bash
# Captures real BGP sessions of BIRD, FRR, GoBGP and ExaBGP as raw message
# streams for the golden tests (tests/bgp_golden.rs).
#
# Run by hand, as root, from the repository root:
#
#     sudo bash tests/data/bgp/capture.sh            # all four daemons
#     sudo bash tests/data/bgp/capture.sh frr bird   # some of them
#
# Needs the Debian packages bird2, frr, gobgpd and exabgp, and python3.
# Each daemon runs in its own network namespace (ttcap-<daemon>-r) linked by a
# veth pair to a namespace (ttcap-<daemon>-c) where collector.py is the peer.
# The root namespace's links and routes are never touched; the namespaces and
# processes this script starts are removed (by PID) when it ends.
# Output: tests/data/bgp/<daemon>.bin (what the daemon sent) and
# <daemon>.bin.args (the `tortie bgp decode` flags for that session).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d /tmp/ttcap.XXXXXX)"
PIDS=()
NAMESPACES=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Two namespaces joined by a veth pair: router 192.0.2.1 / 2001:db8:ff::1,
# collector 192.0.2.2 / 2001:db8:ff::2.
make_link() {
    local name=$1 r="ttcap-$1-r" c="ttcap-$1-c"
    ip netns add "$r"; NAMESPACES+=("$r")
    ip netns add "$c"; NAMESPACES+=("$c")
    for ns in "$r" "$c"; do
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
        ip -n "$ns" link set lo up
    done
    ip link add "ttr-$name" netns "$r" type veth peer name "ttc-$name" netns "$c"
    ip -n "$r" addr add 192.0.2.1/24 dev "ttr-$name"
    ip -n "$r" addr add 2001:db8:ff::1/64 dev "ttr-$name" nodad
    ip -n "$c" addr add 192.0.2.2/24 dev "ttc-$name"
    ip -n "$c" addr add 2001:db8:ff::2/64 dev "ttc-$name" nodad
    ip -n "$r" link set "ttr-$name" up
    ip -n "$c" link set "ttc-$name" up
}

start_collector() {
    local name=$1
    ip netns exec "ttcap-$name-c" python3 "$HERE/collector.py" 192.0.2.2 "$HERE/$name.bin" --refresh-after 5 --timeout 25 &
    COLLECTOR=$!
    PIDS+=("$COLLECTOR")
}

# Waits for the collector to see the session close (or time out).
finish() {
    wait "$COLLECTOR" || true
}

capture_bird() {
    make_link bird
    cat > "$WORK/bird.conf" <<'CONF'
router id 192.0.2.1;
protocol device {}
protocol static s4 { ipv4; route 10.1.0.0/16 blackhole; route 10.1.1.0/24 blackhole; route 10.1.2.0/24 blackhole; }
protocol static s6 { ipv6; route 2001:db8:1::/48 blackhole; route 2001:db8:1:1::/64 blackhole; }
filter decorate {
    bgp_community.add((65001, 100));
    bgp_large_community.add((65001, 1, 2));
    bgp_ext_community.add((rt, 65001, 100));
    bgp_med = 50;
    accept;
}
protocol bgp collector {
    local 192.0.2.1 as 65001;
    neighbor 192.0.2.2 as 65000;
    graceful restart on;
    enable extended messages on;
    ipv4 { import none; export filter decorate; add paths tx; };
    ipv6 { import none; export filter decorate; add paths tx; next hop address 2001:db8:ff::1; };
}
CONF
    start_collector bird
    ip netns exec ttcap-bird-r bird -f -c "$WORK/bird.conf" -s "$WORK/bird.ctl" -P "$WORK/bird.pid" &
    PIDS+=($!)
    sleep 12
    ip netns exec ttcap-bird-r birdc -s "$WORK/bird.ctl" disable collector '"captured by tortie"' || true
    finish
}

capture_frr() {
    make_link frr
    cat > "$WORK/bgpd.conf" <<'CONF'
hostname ttcap-frr
frr defaults traditional
route-map DECORATE permit 10
 set community 65002:100 no-export
 set large-community 4200000002:1:2
 set extcommunity rt 65002:100
 set metric 20
router bgp 4200000002
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp graceful-restart
 neighbor 192.0.2.2 remote-as 65000
 neighbor 192.0.2.2 capability extended-nexthop
 address-family ipv4 unicast
  network 10.2.0.0/16
  network 10.2.1.0/24
  neighbor 192.0.2.2 route-map DECORATE out
  neighbor 192.0.2.2 addpath-tx-all-paths
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:2::/48
  neighbor 192.0.2.2 route-map DECORATE out
  network 2001:db8:2:1::/64
  neighbor 192.0.2.2 activate
  neighbor 192.0.2.2 addpath-tx-all-paths
 exit-address-family
CONF
    mkdir -p "/var/run/frr/ttcap-frr" "/etc/frr/ttcap-frr"
    touch "/etc/frr/ttcap-frr/vtysh.conf"
    chown -R frr:frr "/var/run/frr/ttcap-frr"
    chmod 755 "$WORK"
    chmod 644 "$WORK/bgpd.conf"
    start_collector frr
    ip netns exec ttcap-frr-r /usr/lib/frr/bgpd -Z -N ttcap-frr -u frr -g frr \
        -f "$WORK/bgpd.conf" -i "/var/run/frr/ttcap-frr/bgpd.pid" --vty_socket "/var/run/frr/ttcap-frr" &
    local pid=$!
    PIDS+=("$pid")
    sleep 12
    # A shutdown communication if vtysh reaches bgpd; otherwise stopping
    # bgpd (by its PID) still makes it send a Cease NOTIFICATION.
    ip netns exec ttcap-frr-r vtysh -N ttcap-frr --vty_socket "/var/run/frr/ttcap-frr" \
        -c 'configure terminal' -c 'router bgp 4200000002' \
        -c 'neighbor 192.0.2.2 shutdown message captured by tortie' || true
    kill -TERM "$pid" 2>/dev/null || true
    finish
    rm -rf "/var/run/frr/ttcap-frr" "/etc/frr/ttcap-frr"
}

capture_gobgp() {
    make_link gobgp
    cat > "$WORK/gobgpd.toml" <<'CONF'
[global.config]
  as = 65003
  router-id = "192.0.2.1"
  port = 179
[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.0.2.2"
    peer-as = 65000
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.add-paths.config]
      send-max = 4
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
CONF
    start_collector gobgp
    ip netns exec ttcap-gobgp-r gobgpd -f "$WORK/gobgpd.toml" -l warn --api-hosts 127.0.0.1:50051 &
    PIDS+=($!)
    sleep 3
    local g="ip netns exec ttcap-gobgp-r gobgp -u 127.0.0.1 -p 50051"
    $g global rib -a ipv4 add 10.3.0.0/16 community 65003:100 large-community 65003:1:2 med 10 || true
    $g global rib -a ipv4 add 10.3.1.0/24 aspath 64512,64513 || true
    $g global rib -a ipv6 add 2001:db8:3::/48 nexthop 2001:db8:ff::1 community 65003:200 || true
    sleep 9
    $g neighbor 192.0.2.2 shutdown -m "captured by tortie" || $g neighbor 192.0.2.2 disable || true
    finish
}

capture_exabgp() {
    make_link exabgp
    cat > "$WORK/exabgp.conf" <<'CONF'
neighbor 192.0.2.2 {
    router-id 192.0.2.1;
    local-address 192.0.2.1;
    local-as 65004;
    peer-as 65000;
    hold-time 90;
    capability {
        route-refresh;
        graceful-restart 120;
        add-path send;
    }
    family {
        ipv4 unicast;
        ipv6 unicast;
    }
    static {
        route 10.4.0.0/16 next-hop 192.0.2.1 community [65004:100 no-export] large-community [65004:1:2] extended-community [ target:65004:100 ] med 30 as-path [ 65004 64512 64513 ] atomic-aggregate aggregator (65004:192.0.2.1);
        route 10.4.1.0/24 next-hop 192.0.2.1 path-information 0.0.0.7 as-path [ 65004 ( 64520 64521 ) ];
        route 2001:db8:4::/48 next-hop 2001:db8:ff::1 community [65004:200];
    }
}
CONF
    start_collector exabgp
    env exabgp.daemon.user=root exabgp.tcp.bind='' exabgp.api.cli=false exabgp.log.destination=stderr exabgp.log.level=WARNING \
        ip netns exec ttcap-exabgp-r exabgp "$WORK/exabgp.conf" &
    local pid=$!
    PIDS+=("$pid")
    sleep 12
    # ExaBGP sends a Cease NOTIFICATION when it is told to stop.
    kill -TERM "$pid" 2>/dev/null || true
    finish
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(bird frr gobgp exabgp)
for daemon in "${targets[@]}"; do
    echo "== capturing $daemon"
    "capture_$daemon"
done
