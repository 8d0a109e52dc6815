//! A TCP transfer with a checksum at both ends: what arrived is what was sent.

use std::time::Duration;
use tortie::netns::Topology;
use tortie::testing::wait_until;

/// Receives one TCP connection on ADDR:PORT and writes "bytes sha256" of
/// everything received to OUT once the sender closes.
const SINK: &str = r#"
import hashlib, socket, sys
addr, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port)); s.listen(1)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(1 << 16)
    if not d: break
    h.update(d); n += len(d)
open(out + '.tmp', 'w').write(f'{n} {h.hexdigest()}'); __import__('os').rename(out + '.tmp', out)
"#;

/// Sends BYTES of seeded pseudo-random data to ADDR:PORT; prints "bytes sha256".
const SOURCE: &str = r#"
import hashlib, random, socket, sys
addr, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = random.Random(21).randbytes(total)
c = socket.create_connection((addr, port), timeout=30); c.sendall(data); c.close()
print(len(data), hashlib.sha256(data).hexdigest())
"#;

/// Sends `bytes` from namespace `from` to a sink at `to_addr` in `to`
/// and returns what was sent and what arrived, as "bytes sha256".
pub fn bulk_transfer(t: &mut Topology, from: &str, to: &str, to_addr: &str, bytes: usize) -> (String, String) {
    let out = t.dir().join(format!("sink-{to}"));
    let out_arg = out.to_str().unwrap().to_string();
    t.spawn(to, &["python3", "-c", SINK, to_addr, "5202", &out_arg]).unwrap();
    // Connection refused until the sink listens: retry that.
    let sent = wait_until("the bulk sender to finish", Duration::from_secs(60), || {
        let o = t.exec(from, &["python3", "-c", SOURCE, to_addr, "5202", &bytes.to_string()]).ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    })
    .unwrap();
    let received =
        wait_until("the sink's digest", Duration::from_secs(30), || std::fs::read_to_string(&out).ok()).unwrap();
    (sent, received)
}

/// Sends `count` IP-in-IP packets from namespace `ns` to `to`, each holding
/// a UDP packet from `inner_src` to `inner_dst` (port 4001).
pub fn send_ipip(t: &Topology, ns: &str, to: &str, inner_src: &str, inner_dst: &str, count: u32) {
    let script = r#"
import socket, struct, sys
to, src, dst, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
payload = b'spoofed'
hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + 8 + len(payload), 0, 0, 64, 17, 0,
                  socket.inet_aton(src), socket.inet_aton(dst))
hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
udp = struct.pack('!HHHH', 4000, 4001, 8 + len(payload), 0) + payload
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
for _ in range(count):
    s.sendto(hdr + udp, (to, 0))
"#;
    let count = count.to_string();
    t.exec(ns, &["python3", "-c", script, to, inner_src, inner_dst, &count]).unwrap();
}
