//! Child processes of the stack (PostgreSQL, restate-server, the service): started
//! in a process group of their own and so that they die with us, stopped gracefully,
//! and checked to be the ones that listen on their ports; the check that a port is
//! free before anything starts; the service's `ready` line.

use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Puts the child in a process group of its own, so that the terminal's Ctrl-C
/// reaches only us (we then stop the children in order), and makes it receive
/// SIGTERM when this process dies, so that a killed `dev` leaves nothing running.
pub fn isolate(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// Sends `signal` to the child, then waits up to `grace` before killing it.
pub async fn stop(child: &mut Child, signal: i32, grace: Duration) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid as i32, signal);
        }
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768 and up),
/// so that no outgoing connection takes a port between the pick and the listen, as
/// a port the kernel picks for a bind to `:0` can be.
const PICKED_PORTS: std::ops::Range<u32> = 15_000..32_768;

/// A free TCP port on the loopback interface. Each call in a process hands out the
/// next port of [`PICKED_PORTS`], from a start that differs per process, so that
/// tests running at once in one process never get the same port, and processes
/// running at once rarely do.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let span = PICKED_PORTS.end - PICKED_PORTS.start;
    let next = NEXT.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        AtomicU32::new(std::process::id().wrapping_mul(7919) ^ nanos)
    });
    for _ in 0..span {
        let port = (PICKED_PORTS.start + next.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if claim(port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        ErrorKind::AddrInUse,
        "no free port below the ephemeral range",
    ))
}

/// Claims `port` for this process's life: a lock on a file named for it, which no
/// other process that picks ports here can take until this one exits. A port
/// handed out is often bound only later (a database that takes a second to
/// start); without the claim, another process checking meanwhile finds it free
/// too. Where no lock file can be made, the bind check alone decides.
fn claim(port: u16) -> bool {
    use std::sync::Mutex;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("order-stack-ports");
    let file = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
    });
    let Ok(file) = file else {
        return true;
    };
    match file.try_lock() {
        Ok(()) => {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
            true
        }
        Err(_) => false,
    }
}

/// A port something is about to listen on, and what sets it.
#[derive(Debug, Clone)]
pub struct PortUse {
    /// Interface it listens on.
    pub host: String,
    pub port: u16,
    /// The variable that sets the port, named in errors; `None` when it is picked.
    pub var: Option<&'static str>,
    /// What listens there, when there is no variable.
    pub what: &'static str,
}

impl PortUse {
    /// A port set by `var`.
    pub fn set_by(var: &'static str, host: &str, port: u16) -> PortUse {
        PortUse {
            host: host.to_owned(),
            port,
            var: Some(var),
            what: var,
        }
    }

    /// "port 8080 (ORDER_RESTATE_INGRESS_PORT) is already in use: ...".
    pub fn in_use(&self) -> String {
        match self.var {
            Some(var) => format!(
                "port {} ({var}) is already in use: another copy running? set {var}",
                self.port
            ),
            None => format!("port {} ({}) is already in use", self.port, self.what),
        }
    }
}

/// Checks, before anything starts, that every port can be listened on and that no
/// two uses share one. The error names each port that cannot be used and its variable.
pub fn check_ports_free(uses: &[PortUse]) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for (i, used) in uses.iter().enumerate() {
        // Port 0: the system picks a free one.
        if used.port == 0 {
            continue;
        }
        if let Some(earlier) = uses[..i].iter().find(|u| u.port == used.port) {
            problems.push(format!(
                "port {} is set for both {} and {}",
                used.port, earlier.what, used.what
            ));
            continue;
        }
        match std::net::TcpListener::bind((used.host.as_str(), used.port)) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::AddrInUse => problems.push(used.in_use()),
            Err(e) => problems.push(format!(
                "cannot listen on {}:{} ({}): {e}",
                used.host, used.port, used.what
            )),
        }
    }
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

/// How long another process must hold a port before [`wait_listening`] gives up.
const TAKEN_FOR: Duration = Duration::from_millis(500);

/// Who holds the listening TCP socket on a port, as far as `/proc` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// A process of the given process group.
    Ours,
    /// Another process (or one we may not look into).
    Other,
    /// Nobody listens there.
    Nobody,
    /// `/proc` cannot tell (not Linux, or not mounted).
    Unknown,
}

/// Who listens on `port`: a process of process group `group` (a child started with
/// [`isolate`] has its pid as group) or another one.
pub fn listener_on(port: u16, group: u32) -> Listener {
    let inodes = match listening_inodes(port) {
        Ok(inodes) => inodes,
        Err(_) => return Listener::Unknown,
    };
    if inodes.is_empty() {
        return Listener::Nobody;
    }
    let ours = pids_holding(&inodes, |pid| {
        pid == group || process_group_of(pid) == Some(group)
    });
    if ours.is_empty() {
        Listener::Other
    } else {
        Listener::Ours
    }
}

/// The pids of the processes (of those we may look into) that hold a listening TCP
/// socket on `port`.
pub fn listening_pids(port: u16) -> Vec<u32> {
    match listening_inodes(port) {
        Ok(inodes) if !inodes.is_empty() => pids_holding(&inodes, |_| true),
        _ => Vec::new(),
    }
}

/// Waits until the child's process group listens on every one of `ports`, for at
/// most `limit`. Fails naming the port when another process holds one of them
/// (a second copy's server could not listen and would otherwise be taken for ours),
/// or when the child exits.
pub async fn wait_listening(
    child: &mut Child,
    what: &str,
    ports: &[PortUse],
    limit: Duration,
    log: &Path,
) -> anyhow::Result<()> {
    let Some(group) = child.id() else {
        anyhow::bail!("{what} is not running; see {}", log.display());
    };
    let start = Instant::now();
    let mut taken_since: Option<Instant> = None;
    loop {
        // Exit first: a dead child's sockets are closed by the time it can be reaped.
        let exited = child.try_wait()?;
        let states: Vec<Listener> = ports.iter().map(|p| listener_on(p.port, group)).collect();
        let taken: Vec<String> = ports
            .iter()
            .zip(&states)
            .filter(|(_, s)| **s == Listener::Other)
            .map(|(p, _)| p.in_use())
            .collect();
        let could_not_listen = || {
            anyhow::anyhow!(
                "{what} could not listen: {}; see {}",
                taken.join("; "),
                log.display()
            )
        };
        if let Some(status) = exited {
            if !taken.is_empty() {
                return Err(could_not_listen());
            }
            anyhow::bail!(
                "{what} exited during start ({status}); see {}",
                log.display()
            );
        }
        // A socket of a process that is exiting is briefly listed without its
        // owner: only a holder that stays counts as another process.
        if taken.is_empty() {
            taken_since = None;
        } else if taken_since.get_or_insert_with(Instant::now).elapsed() > TAKEN_FOR {
            return Err(could_not_listen());
        }
        let mine = |s: &Listener| matches!(s, Listener::Ours | Listener::Unknown);
        if states.iter().all(mine) {
            return Ok(());
        }
        if start.elapsed() > limit {
            let missing: Vec<String> = ports
                .iter()
                .zip(&states)
                .filter(|(_, s)| !mine(s))
                .map(|(p, _)| format!("{} ({})", p.port, p.what))
                .collect();
            anyhow::bail!(
                "{what} does not listen on port {} after {limit:?}; see {}",
                missing.join(", "),
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Socket inodes of the TCP sockets listening on `port`, on any address.
fn listening_inodes(port: u16) -> std::io::Result<Vec<u64>> {
    let mut inodes = Vec::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            // State 0A is LISTEN.
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && local_port == Some(port) {
                if let Ok(inode) = inode.parse() {
                    inodes.push(inode);
                }
            }
        }
    }
    if !readable {
        return Err(std::io::Error::new(ErrorKind::NotFound, "no /proc/net/tcp"));
    }
    Ok(inodes)
}

/// The pids accepted by `filter` that hold one of the socket `inodes`.
fn pids_holding(inodes: &[u64], filter: impl Fn(u32) -> bool) -> Vec<u32> {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if !filter(pid) {
            continue;
        }
        // Processes of other users cannot be looked into; they count as "other".
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
        });
        if holds {
            pids.push(pid);
        }
    }
    pids
}

/// The process group of `pid`, from `/proc/<pid>/stat`.
fn process_group_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Waits up to `within` for `child`, started with a piped stdout, to print the
/// service's `ready http://...` line; then keeps draining its stdout so that it
/// never blocks on a full pipe. `false` when the line did not come in time.
pub async fn wait_ready(child: &mut Child, within: Duration) -> bool {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let Some(stdout) = child.stdout.take() else {
        return false;
    };
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(within, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("ready http://") {
                return true;
            }
        }
        false
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    matches!(ready, Ok(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_ports_free_names_the_variable_when_a_port_is_taken() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let free = free_port().unwrap();

        let e = check_ports_free(&[
            PortUse::set_by("ORDER_HTTP_PORT", "127.0.0.1", free),
            PortUse::set_by("ORDER_RESTATE_INGRESS_PORT", "127.0.0.1", port),
        ])
        .unwrap_err();

        assert_eq!(
            e.to_string(),
            format!(
                "port {port} (ORDER_RESTATE_INGRESS_PORT) is already in use: another copy \
                 running? set ORDER_RESTATE_INGRESS_PORT"
            )
        );
    }

    #[test]
    fn picked_ports_are_distinct_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(
            ports.iter().all(|&p| (15_000..32_768).contains(&p)),
            "{ports:?}"
        );
    }

    #[test]
    fn a_picked_port_stays_claimed_against_every_other_picker() {
        let port = free_port().unwrap();
        // Another process opening the port's lock file cannot lock it...
        let path = std::env::temp_dir()
            .join("order-stack-ports")
            .join(port.to_string());
        let other = std::fs::File::open(path).unwrap();
        assert!(other.try_lock().is_err());
        // ...nor does this process claim it a second time.
        assert!(!claim(port));
    }

    #[test]
    fn check_ports_free_rejects_one_port_set_twice() {
        let port = free_port().unwrap();

        let e = check_ports_free(&[
            PortUse::set_by("ORDER_HTTP_PORT", "127.0.0.1", port),
            PortUse::set_by("ORDER_SIM_PORT", "127.0.0.1", port),
        ])
        .unwrap_err();

        assert!(
            e.to_string()
                .contains("is set for both ORDER_HTTP_PORT and ORDER_SIM_PORT"),
            "{e}"
        );
    }

    #[test]
    fn listener_on_tells_our_socket_from_another_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = std::process::id();
        // SAFETY: getpgrp has no preconditions.
        let my_group = unsafe { libc::getpgrp() } as u32;

        assert_eq!(listener_on(port, my_group), Listener::Ours);
        assert!(listening_pids(port).contains(&me));
        // No process has that group.
        assert_eq!(listener_on(port, u32::MAX), Listener::Other);
        drop(listener);
        assert_eq!(listener_on(port, my_group), Listener::Nobody);
    }
}
