//! Memory of this process as the kernel counts it, read from
//! `/proc/self/status`: resident set now (`VmRSS`), its peak so far
//! (`VmHWM`) and the part of it that is the process's own (`RssAnon`:
//! heap and stacks, not the pages of mapped files, which are the page
//! cache's and which the kernel reclaims under pressure). Every result
//! line carries the first; the reopen workload samples all three as the
//! number of streams grows.

/// Resident memory of this process now, in bytes (0 where `/proc` is not
/// available).
#[must_use]
pub fn rss_bytes() -> u64 {
    status_field_bytes("VmRSS")
}

/// Peak resident memory of this process so far, in bytes (0 where `/proc`
/// is not available).
#[must_use]
pub fn peak_rss_bytes() -> u64 {
    status_field_bytes("VmHWM")
}

/// Anonymous resident memory of this process now (heap and stacks, no
/// file-backed pages), in bytes (0 where `/proc` is not available).
#[must_use]
pub fn anon_rss_bytes() -> u64 {
    status_field_bytes("RssAnon")
}

/// A `kB` field of `/proc/self/status`, in bytes; 0 when absent.
fn status_field_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    parse_field_kb(&status, field).map_or(0, |kb| kb * 1024)
}

/// The value of `field:  <n> kB` in `status`.
fn parse_field_kb(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kb_fields() {
        let status = "Name:\tquipu\nVmHWM:\t  262144 kB\nVmRSS:\t  131072 kB\nRssAnon:\t   65536 kB\n";
        assert_eq!(parse_field_kb(status, "VmRSS"), Some(131_072));
        assert_eq!(parse_field_kb(status, "VmHWM"), Some(262_144));
        assert_eq!(parse_field_kb(status, "RssAnon"), Some(65_536));
        assert_eq!(parse_field_kb(status, "VmSwap"), None);
    }
}
