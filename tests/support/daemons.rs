//! Starting BIRD and FRR's bgpd in a test namespace and asking them things.

use std::path::{Path, PathBuf};

use tortie::netns::Topology;

/// Starts BIRD in `ns` with `config`; returns its control socket.
pub fn start_bird(topo: &mut Topology, ns: &str, config: &str) -> PathBuf {
    let dir = topo.dir().to_path_buf();
    let ctl = dir.join(format!("{ns}.ctl"));
    let conf = dir.join(format!("{ns}.bird.conf"));
    std::fs::write(&conf, config).unwrap();
    topo.spawn(ns, &["bird", "-f", "-c", conf.to_str().unwrap(), "-s", ctl.to_str().unwrap()]).unwrap();
    ctl
}

/// A `birdc` command's output (empty when birdc failed).
pub fn birdc(topo: &Topology, ns: &str, ctl: &Path, args: &[&str]) -> String {
    let mut argv = vec!["birdc", "-s", ctl.to_str().unwrap()];
    argv.extend_from_slice(args);
    topo.exec(ns, &argv).map(|out| String::from_utf8_lossy(&out.stdout).into_owned()).unwrap_or_default()
}

/// Starts FRR's bgpd (without zebra) in `ns`, listening on `listen`, with
/// `config`; returns its vty directory.
pub fn start_frr(topo: &mut Topology, ns: &str, listen: &str, config: &str) -> PathBuf {
    spawn_frr(topo, ns, listen, config).0
}

/// [`start_frr`], also returning bgpd's pid (to freeze or kill it).
pub fn spawn_frr(topo: &mut Topology, ns: &str, listen: &str, config: &str) -> (PathBuf, u32) {
    let dir = topo.dir().join(format!("{ns}-frr"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("bgpd.conf");
    std::fs::write(&conf, config).unwrap();
    let pid_file = dir.join("bgpd.pid");
    let argv = [
        "/usr/lib/frr/bgpd",
        "-f",
        conf.to_str().unwrap(),
        "-i",
        pid_file.to_str().unwrap(),
        "--vty_socket",
        dir.to_str().unwrap(),
        "-Z",
        "-n",
        "-S",
        "-P",
        "0",
        "-l",
        listen,
    ];
    let pid = topo.spawn(ns, &argv).unwrap().pid();
    (dir, pid)
}

/// A vtysh command's output (empty when vtysh failed).
pub fn vtysh(topo: &Topology, ns: &str, dir: &Path, command: &str) -> String {
    topo.exec(ns, &["vtysh", "--vty_socket", dir.to_str().unwrap(), "-c", command])
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// A vtysh command's JSON output (`Null` when it is not JSON yet).
pub fn vtysh_json(topo: &Topology, ns: &str, dir: &Path, command: &str) -> serde_json::Value {
    serde_json::from_str(&vtysh(topo, ns, dir, command)).unwrap_or(serde_json::Value::Null)
}

/// Starts FRR's bfdd in `ns` with `config`; returns its vty directory.
/// bfdd drops its privileges to the `frr` user, which must own the
/// directory holding its pid file and sockets.
pub fn start_bfdd(topo: &mut Topology, ns: &str, config: &str) -> PathBuf {
    let dir = topo.dir().join(format!("{ns}-bfdd"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("bfdd.conf");
    std::fs::write(&conf, config).unwrap();
    let frr = nix::unistd::User::from_name("frr").unwrap().expect("the frr user exists");
    for path in [&dir, &conf] {
        std::os::unix::fs::chown(path, Some(frr.uid.as_raw()), Some(frr.gid.as_raw())).unwrap();
    }
    let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let argv = [
        "/usr/lib/frr/bfdd".to_string(),
        "-f".into(),
        file("bfdd.conf"),
        "-i".into(),
        file("bfdd.pid"),
        "--vty_socket".into(),
        dir.to_str().unwrap().into(),
        "--bfdctl".into(),
        file("bfdd.sock"),
        "-z".into(),
        file("zserv.api"),
        "-P".into(),
        "0".into(),
    ];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    topo.spawn(ns, &argv).unwrap();
    dir
}
