//! What the benchmark binaries (`floodwall-bench`, `floodwall-flood-bench`) share: their
//! exit codes, the CPU they run on, and the warning about the kernel's run-time accounting.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use nix::{
    sched::{CpuSet, sched_getaffinity, sched_setaffinity},
    unistd::Pid,
};

/// Runs a benchmark and turns its outcome into the exit code every benchmark uses: 0 when it
/// ran (and, with `--check`, met its targets), 1 when `--check` found a missed target, 2 on
/// an error. `run` returns whether the targets were met or not checked. Misses and errors
/// are reported on stderr under the benchmark's `name`.
pub fn main(name: &str, run: impl FnOnce() -> anyhow::Result<bool>) -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("{name}: a target was missed (--check)");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("{name}: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// The CPUs the calling thread may run on.
///
/// # Errors
/// If the kernel does not say.
pub fn allowed_cpus() -> anyhow::Result<Vec<usize>> {
    // Pid 0: the calling thread.
    let set = sched_getaffinity(Pid::from_raw(0)).context("cannot read the CPU affinity")?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Pins the calling thread to `cpu`. Threads and processes it starts afterwards inherit the
/// affinity.
///
/// # Errors
/// If `cpu` is not one the thread may use, or the kernel refuses.
pub fn pin_thread(cpu: usize) -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)
        .with_context(|| format!("CPU {cpu} is beyond the largest CPU set"))?;
    sched_setaffinity(Pid::from_raw(0), &set)
        .with_context(|| format!("cannot pin the thread to CPU {cpu}"))
}

/// Pins the calling thread to `cpu` (a `--cpu` option), or without one to the last CPU it may
/// use, usually the one with the fewest device interrupts; returns the CPU.
///
/// # Errors
/// If `cpu` is not among the CPUs the thread may use, or pinning fails.
pub fn pin_to_cpu(cpu: Option<usize>) -> anyhow::Result<usize> {
    let allowed = allowed_cpus()?;
    let cpu = match cpu {
        Some(cpu) if allowed.contains(&cpu) => cpu,
        Some(cpu) => bail!("--cpu {cpu} is not among the CPUs this process may use: {allowed:?}"),
        None => *allowed
            .last()
            .context("this process may use no CPU at all")?,
    };
    pin_thread(cpu)?;
    Ok(cpu)
}

/// Warns on stderr when `kernel.bpf_stats_enabled` is set: the kernel then times every
/// program run, which adds to each packet's cost and skews every figure a benchmark takes.
pub fn warn_if_bpf_stats_enabled() {
    if std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|s| s.trim() != "0")
    {
        eprintln!(
            "warning: kernel.bpf_stats_enabled is on: every program run pays for run-time accounting"
        );
    }
}
