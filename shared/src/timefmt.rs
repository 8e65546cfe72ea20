//! UTC timestamps without a time-zone database: log lines and file names
//! only ever need UTC.

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn split(ns: u64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = (ns / 1_000_000_000) as i64;
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400) as u32;
    (y, mo, d, rem / 3600, rem / 60 % 60, rem % 60, (ns % 1_000_000_000) as u32)
}

/// `2026-11-28T00:41:30.123Z`
pub fn rfc3339_millis(ns: u64) -> String {
    let (y, mo, d, h, mi, s, n) = split(ns);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z", n / 1_000_000)
}

/// `20261128T004130Z`, for file names that sort by time.
pub fn compact(ns: u64) -> String {
    let (y, mo, d, h, mi, s, _) = split(ns);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(1_795_826_490_123_000_000), "2026-11-28T00:41:30.123Z");
        assert_eq!(compact(951_782_400_000_000_000), "20000229T000000Z");
    }
}
