//! Load generators: closed loop (N workers back to back) and open loop (a fixed
//! rate, latency measured from the planned send time so that a stall is not hidden).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub errors: usize,
    pub per_second: f64,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
}

impl Figures {
    fn from(mut latencies: Vec<Duration>, errors: usize, elapsed: Duration) -> Figures {
        latencies.sort();
        let pick = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        Figures {
            errors,
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: pick(0.50),
            p95: pick(0.95),
            p99: pick(0.99),
        }
    }
}

/// Runs `call` from `workers` concurrent loops for `duration`. `call` gets a
/// sequence number and says whether the request succeeded.
pub async fn closed_loop<F, Fut>(workers: usize, duration: Duration, call: F) -> Figures
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let results = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (call, counter, results) = (call.clone(), counter.clone(), results.clone());
            tokio::spawn(async move {
                let mut local = (Vec::new(), 0usize);
                while start.elapsed() < duration {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let sent = Instant::now();
                    if call(n).await {
                        local.0.push(sent.elapsed());
                    } else {
                        local.1 += 1;
                    }
                }
                let mut all = results.lock().await;
                all.0.extend(local.0);
                all.1 += local.1;
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let (latencies, errors) = std::mem::take(&mut *results.lock().await);
    Figures::from(latencies, errors, elapsed)
}

/// Sends `rate` requests a second for `duration`, each on its own task.
pub async fn open_loop<F, Fut>(rate: u32, duration: Duration, call: F) -> Figures
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let call = Arc::new(call);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let total = (duration.as_secs_f64() * rate as f64) as u64;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let planned = start + interval * n as u32;
        tokio::time::sleep_until(planned.into()).await;
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let ok = call(n).await;
            (ok, planned.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok((true, latency)) => latencies.push(latency),
            _ => errors += 1,
        }
    }
    Figures::from(latencies, errors, start.elapsed())
}
