//! The one thread setting of every binding that runs parallel work, and the pools it uses.
//!
//! Every entry point that runs rayon work calls [`install`]; nothing runs on rayon's global
//! pool, whose size is fixed at first use and whose threads do not survive `fork`. A pool is
//! built once per thread count and kept. A forked child (`os.fork`, `multiprocessing`'s fork
//! context, `datasets.map(num_proc=...)`, a `DataLoader` worker) inherits the cache but not
//! the threads, so the cache remembers the pid that built it and a process with another pid
//! forgets the inherited pools (without dropping them: dropping would signal threads that do
//! not exist there) and builds its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyInt;
use rayon::{ThreadPool, ThreadPoolBuilder};

/// The most threads one call may use: far above any machine's cores, far below the count
/// that would exhaust the process (each thread reserves a stack).
pub const MAX_THREADS: usize = 1024;

/// Read when no thread count is given.
pub const ENV_VAR: &str = "DPOV2_NUM_THREADS";

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(resolve_threads, m)?)?;
    m.add("MAX_THREADS", MAX_THREADS)?;
    m.add("NUM_THREADS_ENV", ENV_VAR)?;
    Ok(())
}

/// Runs `work` on the cached pool of `num_threads` threads ([`resolve`]d: `None` is
/// `DPOV2_NUM_THREADS`, else the CPUs this process may use). The work may release the GIL;
/// the result does not depend on the count.
///
/// # Errors
/// `ValueError` for a count outside `1..=MAX_THREADS` (or a bad `DPOV2_NUM_THREADS`),
/// `RuntimeError` if the threads cannot be started.
pub fn install<T: Send>(
    num_threads: Option<usize>,
    work: impl FnOnce() -> T + Send,
) -> PyResult<T> {
    let pool = pool(resolve(num_threads)?)?;
    Ok(pool.install(work))
}

/// The thread count `num_threads` stands for, checked against `1..=MAX_THREADS`.
pub fn resolve(num_threads: Option<usize>) -> PyResult<usize> {
    match num_threads {
        Some(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        Some(n) => Err(out_of_range(&n.to_string())),
        None => match std::env::var(ENV_VAR) {
            Ok(value) => match value.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
                _ => Err(PyValueError::new_err(format!(
                    "{ENV_VAR} must be an integer from 1 to {MAX_THREADS}, got '{value}'"
                ))),
            },
            Err(_) => Ok(available_cpus()),
        },
    }
}

/// The CPUs this process may use (its affinity and cgroup quota), capped at `MAX_THREADS`,
/// found once per process: `available_parallelism` reads the cgroup's files at every call,
/// about 60 µs, and the core is called several times per batch. A forked child finds its
/// own (it may be given other CPUs); a change of affinity within a process is not seen, as
/// the pools it built are kept too.
fn available_cpus() -> usize {
    static CPUS: Mutex<Option<(u32, usize)>> = Mutex::new(None);
    let pid = std::process::id();
    // The value is written whole, so a poisoned lock holds a usable one.
    let mut cpus = CPUS.lock().unwrap_or_else(PoisonError::into_inner);
    match *cpus {
        Some((found_by, n)) if found_by == pid => n,
        _ => {
            let n = std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(MAX_THREADS);
            *cpus = Some((pid, n));
            n
        }
    }
}

fn out_of_range(n: &str) -> PyErr {
    PyValueError::new_err(format!(
        "num_threads must be from 1 to {MAX_THREADS}, got {n}"
    ))
}

/// `dpov2.threads.resolve_threads` after its type check: the count `num_threads` (a Python
/// int of any size, or `None`) stands for.
#[pyfunction]
#[pyo3(signature = (num_threads))]
fn resolve_threads(num_threads: Option<&Bound<'_, PyInt>>) -> PyResult<usize> {
    match num_threads {
        None => resolve(None),
        Some(n) => match n.extract::<usize>() {
            Ok(n) => resolve(Some(n)),
            Err(_) => Err(out_of_range(&n.to_string())), // negative or past usize
        },
    }
}

/// The pools of one process, by thread count.
struct Pools {
    pid: u32,
    by_count: HashMap<usize, Arc<ThreadPool>>,
}

static POOLS: Mutex<Option<Pools>> = Mutex::new(None);

/// The pool of `n` threads of this process, built on first use.
fn pool(n: usize) -> PyResult<Arc<ThreadPool>> {
    // Nothing under the lock can leave the map half-updated, so a poisoned lock is usable.
    let mut guard = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    let pid = std::process::id();
    if guard.as_ref().is_some_and(|pools| pools.pid != pid) {
        // Inherited through fork: the threads behind these pools exist only in the parent.
        std::mem::forget(guard.take());
    }
    let pools = guard.get_or_insert_with(|| Pools {
        pid,
        by_count: HashMap::new(),
    });
    if let Some(pool) = pools.by_count.get(&n) {
        return Ok(Arc::clone(pool));
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(move |i| format!("dpov2-{n}-{i}"))
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start {n} threads: {e}")))?;
    let pool = Arc::new(pool);
    pools.by_count.insert(n, Arc::clone(&pool));
    Ok(pool)
}
