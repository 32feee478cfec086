//! Cold reads need a cold page cache: this asks the kernel to write back
//! dirty pages and drop clean ones, which needs root. Where it is not
//! allowed, a "cold" pass is cold only for the engine's own caches, and
//! the result line says so (`page_cache_dropped: false`).

/// Syncs and drops the page cache; says whether the kernel allowed it.
#[must_use]
pub fn drop_all() -> bool {
    let synced = std::process::Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}
