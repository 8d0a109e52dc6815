//! Boxed tables in the layout calicoctl prints, so scripts written for
//! `calicoctl node status` keep working.

/// Renders `rows` under `headers`, centring headers and left-aligning cells.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule: String = widths.iter().map(|w| format!("+{}", "-".repeat(w + 2))).collect::<String>() + "+\n";
    let mut out = rule.clone();
    for (h, w) in headers.iter().zip(&widths) {
        out.push_str(&format!("| {h:^w$} "));
    }
    out.push_str("|\n");
    out.push_str(&rule);
    for row in rows {
        for (cell, w) in row.iter().zip(&widths) {
            out.push_str(&format!("| {cell:<w$} "));
        }
        out.push_str("|\n");
    }
    out.push_str(&rule);
    out
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// `HH:MM:SS` (UTC) of a unix time, as calicoctl's SINCE column.
pub fn clock(unix: u64) -> String {
    let s = unix % DAY;
    format!("{:02}:{:02}:{:02}", s / HOUR, (s / MINUTE) % 60, s % MINUTE)
}

/// A SINCE column's cell: the time (UTC, `HH:MM:SS`) when `unix` is on the same day as `now`,
/// else the date and minute (`YYYY-MM-DD HH:MM`): a bare clock time from another day would read
/// as today's.
pub fn since(unix: u64, now: u64) -> String {
    if unix / DAY == now / DAY {
        clock(unix)
    } else {
        let time = clock(unix);
        format!("{} {}", date(unix), &time[..time.len() - ":SS".len()])
    }
}

/// `YYYY-MM-DD` (UTC) of a unix time (the proleptic Gregorian calendar, Howard Hinnant's
/// days-to-civil algorithm).
pub fn date(unix: u64) -> String {
    let z = unix / DAY + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A duration in its two largest units, as kubectl's AGE: `3d4h`, `1h02m`, `12m05s` or `6s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / DAY, (secs / HOUR) % 24, (secs / MINUTE) % 60, secs % MINUTE);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_calicoctl_layout() {
        let t = render(&["PEER ADDRESS", "STATE"], &[vec!["172.17.8.102".into(), "up".into()]]);
        assert_eq!(
            t,
            "+--------------+-------+\n\
             | PEER ADDRESS | STATE |\n\
             +--------------+-------+\n\
             | 172.17.8.102 | up    |\n\
             +--------------+-------+\n"
        );
    }

    #[test]
    fn durations_show_their_two_largest_units() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(125), "2m05s");
        assert_eq!(duration(725), "12m05s");
        assert_eq!(duration(3725), "1h02m");
        assert_eq!(duration(3 * 86_400 + 4 * 3600 + 5), "3d4h");
        assert_eq!(clock(86_400 + 3600 + 61), "01:01:01");
    }

    #[test]
    fn since_is_a_time_today_and_a_date_before() {
        // 2026-12-06T14:10:40Z and the day before.
        let now = 1_796_566_240;
        assert_eq!(since(now - 3600, now), "13:10:40");
        assert_eq!(since(now - 86_400, now), "2026-12-05 14:10");
        assert_eq!(since(now - 14 * 3600 - 641, now), "2026-12-05 23:59", "the last minute of yesterday");
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(4_107_542_400), "2100-03-01");
    }
}
