//! What each process spends: CPU time from `/proc/PID/stat` (user and system) and
//! resident memory from `/proc/PID/status`, for the processes the bench names
//! (the service, restate-server, PostgreSQL's backends, the bench itself, which
//! also runs the simulator and the load).

use std::collections::BTreeMap;
use std::time::Duration;

/// A named group of processes, found again at each reading (PostgreSQL starts a
/// backend per connection).
#[derive(Debug, Clone)]
pub enum Group {
    Pids(Vec<u32>),
    /// Every process whose command name starts with this.
    Command(&'static str),
}

impl Group {
    fn pids(&self) -> Vec<u32> {
        match self {
            Group::Pids(pids) => pids.clone(),
            Group::Command(prefix) => std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.starts_with(prefix))
                })
                .collect(),
        }
    }
}

/// CPU time spent so far, per process id.
fn cpu_by_pid(pids: &[u32]) -> BTreeMap<u32, Duration> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids.iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name, which may hold spaces: state is field 3,
            // utime 14 and stime 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let used: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some((*pid, Duration::from_secs_f64(used / ticks)))
        })
        .collect()
}

/// Resident memory of `pid` now, in bytes.
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU readings of the groups at the start of a run.
pub struct CpuMeter {
    groups: Vec<(&'static str, Group)>,
    start: Vec<BTreeMap<u32, Duration>>,
}

impl CpuMeter {
    pub fn start(groups: &[(&'static str, Group)]) -> CpuMeter {
        let start = groups.iter().map(|(_, g)| cpu_by_pid(&g.pids())).collect();
        CpuMeter {
            groups: groups.to_vec(),
            start,
        }
    }

    /// CPU spent by each group since the start (processes that started since count
    /// from zero).
    pub fn spent(&self) -> Vec<(&'static str, Duration)> {
        self.groups
            .iter()
            .zip(&self.start)
            .map(|((name, group), start)| {
                let now = cpu_by_pid(&group.pids());
                let spent = now
                    .iter()
                    .map(|(pid, t)| t.saturating_sub(start.get(pid).copied().unwrap_or_default()))
                    .sum();
                (*name, spent)
            })
            .collect()
    }
}

/// The highest resident memory seen of each process while sampling.
#[derive(Default)]
pub struct PeakRss {
    pub peaks: BTreeMap<u32, u64>,
}

impl PeakRss {
    pub fn sample(&mut self, pids: &[u32]) {
        for &pid in pids {
            if let Some(now) = rss(pid) {
                let peak = self.peaks.entry(pid).or_default();
                *peak = (*peak).max(now);
            }
        }
    }

    pub fn max_of(&self, pids: &[u32]) -> u64 {
        pids.iter()
            .filter_map(|p| self.peaks.get(p))
            .copied()
            .max()
            .unwrap_or_default()
    }
}

/// What PostgreSQL did: commits in the bench's database, and the write-ahead log
/// of the whole server (records, bytes, flushes to disk).
#[derive(Debug, Clone, Copy, Default)]
pub struct PgWork {
    pub commits: i64,
    pub wal_records: i64,
    pub wal_bytes: i64,
    pub wal_flushes: i64,
}

impl PgWork {
    /// The counters now. PostgreSQL publishes a backend's counts within a second.
    pub async fn read(db: &sqlx::PgPool) -> sqlx::Result<PgWork> {
        let (commits, wal_records, wal_bytes, wal_flushes): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
                    wal_records, wal_bytes::bigint, wal_sync FROM pg_stat_wal",
        )
        .fetch_one(db)
        .await?;
        Ok(PgWork {
            commits,
            wal_records,
            wal_bytes,
            wal_flushes,
        })
    }

    pub fn since(self, start: PgWork) -> PgWork {
        PgWork {
            commits: self.commits - start.commits,
            wal_records: self.wal_records - start.wal_records,
            wal_bytes: self.wal_bytes - start.wal_bytes,
            wal_flushes: self.wal_flushes - start.wal_flushes,
        }
    }
}
