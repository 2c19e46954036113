use std::process::ExitCode;

use clap::Parser;
use minipay::cli::{self, Cli};
use minipay::telemetry;

/// Threads tokio may start for blocking work. Its default, 512, lets blocking work grow
/// threads, each with its stack and a malloc arena that keeps what it freed, without bound.
/// Password hashing takes at most `MINIPAY_ARGON2_CONCURRENCY` of them
/// ([`minipay::hashing::CONCURRENCY_MAX`] at most); the rest is for name lookups and the seed
/// generator.
const BLOCKING_THREADS_MAX: usize = minipay::hashing::CONCURRENCY_MAX + 16;

/// Allocations of at least this size get a mapping of their own, given back to the system
/// when freed (glibc's `M_MMAP_THRESHOLD`; 128 KiB by default).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 1024 * 1024;

/// glibc's malloc, with a fixed mmap threshold. The large allocations of the process are the
/// argon2 blocks of the hashing slots (`m_cost`, 19 MiB by default), allocated when a burst
/// of sign-ups or log-ins starts and freed when hashing goes idle (see `minipay::hashing`).
/// By default glibc raises its mmap threshold to the size of each mapped block freed (up to
/// 32 MiB) and its trim threshold to twice that, so after the first one every 19 MiB block
/// came from a thread's arena, and arenas keep what is freed in them: resident memory only
/// ever grew. A fixed threshold keeps those blocks in mappings of their own, unmapped on
/// free, and leaves the trim threshold at 128 KiB, so arenas give their free tops back too.
/// (A replacement allocator such as mimalloc or jemalloc would also return memory, at the
/// cost of a C build and another component to tune; with a handful of large blocks whose
/// lifetime minipay controls, glibc with this one setting is enough.) `MALLOC_MMAP_THRESHOLD_`
/// in the environment still wins.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets a malloc parameter; called before any other thread runs.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        }
    }
}

fn main() -> ExitCode {
    tune_allocator();
    telemetry::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS_MAX)
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(cli::run(Cli::parse())) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "minipay failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
