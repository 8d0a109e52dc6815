# Sourced by bench/tunnel.sh and bench/vxlan.sh: two nodes ($A 10.1.0.2, $B
# 10.2.0.2) in two subnets behind a router ($R) that knows no pod routes, and
# a pod on each ($PA 10.24X.1.5 on $A, $PB 10.24X.2.7 on $B, wired as Calico
# wires pods). Set PREFIX (namespace prefix) and POD_NET (e.g. 10.244) first.
# Defines cleanup_namespaces and sleep_until.
A=$PREFIX-a; R=$PREFIX-r; B=$PREFIX-b; PA=$PREFIX-pa; PB=$PREFIX-pb
cleanup_namespaces() { for n in $PA $PB $A $B $R; do ip netns del $n 2>/dev/null || true; done; }
for n in $A $R $B $PA $PB; do ip netns add $n; ip -n $n link set lo up; done
ip -n $A link add eth1 type veth peer name eth1 netns $R
ip -n $B link add eth1 type veth peer name eth2 netns $R
ip -n $A addr add 10.1.0.2/24 dev eth1; ip -n $R addr add 10.1.0.1/24 dev eth1
ip -n $B addr add 10.2.0.2/24 dev eth1; ip -n $R addr add 10.2.0.1/24 dev eth2
for d in "$A eth1" "$B eth1" "$R eth1" "$R eth2"; do set -- $d; ip -n $1 link set $2 up; done
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1
ip -n $A route add default via 10.1.0.1; ip -n $B route add default via 10.2.0.1
pod() { # node pod hostif addr
  ip -n $1 link add $3 type veth peer name eth0 netns $2
  ip -n $1 link set $3 up; ip -n $2 link set eth0 up
  ip netns exec $1 sysctl -qw net.ipv4.conf.$3.proxy_arp=1 net.ipv4.neigh.$3.proxy_delay=0 net.ipv4.ip_forward=1
  ip -n $1 route add $4/32 dev $3 scope link
  ip -n $2 addr add $4/32 dev eth0
  ip -n $2 route add 169.254.1.1 dev eth0 scope link; ip -n $2 route add default via 169.254.1.1 dev eth0
}
pod $A $PA ttpa $POD_NET.1.5; pod $B $PB ttpb $POD_NET.2.7
sleep_until() { for _ in $(seq 1 100); do eval "$1" && return 0; sleep 0.1; done; return 1; }
