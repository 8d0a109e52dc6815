//! An etcd server for one test: its own temporary data directory, free loopback ports, killed by
//! its PID on drop (also when the test panics), and by the kernel when the test process dies
//! without running destructors (SIGKILL from a runner's timeout).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

pub struct EtcdProcess {
    child: Option<Child>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

impl EtcdProcess {
    /// Starts etcd and waits until it accepts writes.
    pub async fn start() -> EtcdProcess {
        let dir = tempfile::Builder::new().prefix("tortie-etcd-").tempdir().expect("temporary directory");
        let mut etcd = EtcdProcess { child: None, dir, client_port: free_port(), peer_port: free_port() };
        etcd.spawn_and_wait().await;
        etcd
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The etcd process's id (0 when it is not running), for benchmarks that read its CPU and
    /// memory from /proc.
    #[allow(dead_code)] // only the benchmarks and one test read it
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Kills etcd at once (SIGKILL, like a crash) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same data directory and ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn_and_wait().await;
    }

    async fn spawn_and_wait(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .expect("etcd log file");
        let mut command = Command::new("etcd");
        command
            .args(["--name", "tortie-test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &self.endpoint(), "--advertise-client-urls", &self.endpoint()])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .arg("--initial-cluster")
            .arg(format!("tortie-test={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        die_with_this_thread(&mut command);
        let child = command.spawn().expect("start etcd (is etcd-server installed?)");
        self.child = Some(child);
        let endpoint = self.endpoint();
        let ready = tortie::testing::wait_until_async("etcd to accept writes", Duration::from_secs(20), || {
            let endpoint = endpoint.clone();
            async move {
                let options = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(Duration::from_millis(500))
                    .with_timeout(Duration::from_secs(1));
                let mut client = etcd_client::Client::connect([endpoint], Some(options)).await.ok()?;
                client.put("/tortie-test-ready", "1", None).await.ok().map(|_| ())
            }
        })
        .await;
        if let Err(e) = ready {
            let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
            panic!("{e}; etcd log:\n{log}");
        }
    }
}

/// Makes the process `command` starts receive SIGKILL when the thread starting it ends, which
/// every end of a test process is (its threads end with it). A test starts etcd from the thread
/// running the test, which outlives the server's use.
#[allow(unsafe_code)]
fn die_with_this_thread(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only makes two system calls,
    // prctl and getppid, both async-signal-safe; it allocates nothing and takes no lock.
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nothing would signal this one.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
