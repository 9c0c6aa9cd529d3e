//! How figures and states read on screen, shared by the dashboard, the headless live view and
//! the reports so that a time or a token count looks the same everywhere: durations, clocks,
//! token counts, status glyphs, the spinner, cutting text to a width, and the wall clock.
//!
//! Pure formatting (except `now_ms`, the one place that reads the wall clock for front ends).
//! Must not import terminal code or know about panes: callers decide layout and colour.

/// How a result that stopped at the token limit is marked, wherever people read it.
pub const CUT_OFF: &str = "cut off at the token limit";

/// How a result taken from the result cache (no model asked) is marked, wherever people read
/// it.
pub const CACHED: &str = "cached";

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::protocol::SubtaskStatus;

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An age as people write it: `30d`, `12h`, `90m`, `45s`, `2w` (`maestro gc --older-than`,
/// `[cache] ttl`). `None` for anything else, or an age no `Duration` holds.
pub fn parse_age(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(secs).map(std::time::Duration::from_secs)
}

/// A measured time, compact: `0.9s`, `3.1s`, `2m05s`, `1h02m`.
///
/// Rounded to the precision shown (tenths of a second, then seconds, then minutes), and the
/// unit is chosen after rounding, so 59 960 ms reads `1m00s`, never `60.0s`. Always a decimal
/// under a minute (`0.3s`, not `300ms`), so a column of times does not change shape as a
/// running one ticks past a second.
pub fn duration(ms: u64) -> String {
    let tenths = ms.saturating_add(50) / 100;
    if tenths < 600 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let secs = ms.saturating_add(500) / 1000;
    if secs < 3600 {
        return format!("{}m{:02}s", secs / 60, secs % 60);
    }
    let mins = ms.saturating_add(30_000) / 60_000;
    format!("{}h{:02}m", mins / 60, mins % 60)
}

/// Time since a run started, as a stopwatch shows it: `00:14`, `59:59`, `01:02:03`.
///
/// Whole seconds, cut rather than rounded: a clock does not show a minute before it passed.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

/// A token count: `950`, `1.2k`, `12.3k`, `1.0M`, `2.5G`.
///
/// Rounded to one decimal, the unit chosen after rounding, so 999 960 reads `1.0M`, never
/// `1000.0k`.
pub fn tokens(n: u64) -> String {
    if n < 1000 {
        return n.to_string();
    }
    let tenths = |size: u64| n.saturating_add(size / 20) / (size / 10);
    let (value, unit) = if tenths(1_000) < 10_000 {
        (tenths(1_000), "k")
    } else if tenths(1_000_000) < 10_000 {
        (tenths(1_000_000), "M")
    } else {
        (tenths(1_000_000_000), "G")
    };
    format!("{}.{}{unit}", value / 10, value % 10)
}

/// A file size: `950 B`, `1.2 KB`, `200.0 KB`, `1.5 MB` (1 KB = 1024 bytes, as
/// `[context] max_bytes` counts).
pub fn bytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    let tenths = |size: u64| n.saturating_mul(10).saturating_add(size / 2) / size;
    if tenths(1024) < 10_240 {
        let t = tenths(1024);
        format!("{}.{} KB", t / 10, t % 10)
    } else {
        let t = tenths(1024 * 1024);
        format!("{}.{} MB", t / 10, t % 10)
    }
}

/// The glyph that goes with a status (always shown with colour or a word, never colour alone).
pub fn status_glyph(status: SubtaskStatus) -> &'static str {
    match status {
        SubtaskStatus::Pending => "·",
        SubtaskStatus::Running => "▶",
        SubtaskStatus::Retrying => "↻",
        SubtaskStatus::Succeeded => "✓",
        SubtaskStatus::Failed => "✗",
        SubtaskStatus::Blocked => "⊘",
        SubtaskStatus::Cancelled => "⊗",
        SubtaskStatus::Validating => "◎",
    }
}

/// Frames of the spinner shown while something runs.
pub const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// How often the spinner moves on a clock.
pub const SPINNER_STEP_MS: u64 = 100;

/// The spinner's `n`th frame (it wraps).
pub fn spinner(n: u64) -> &'static str {
    SPINNER[(n % SPINNER.len() as u64) as usize]
}

/// The spinner's frame at wall-clock time `ms`, so every spinner on screen turns together.
pub fn spinner_at(ms: u64) -> &'static str {
    spinner(ms / SPINNER_STEP_MS)
}

/// Cut `text` to `width` columns, with `…` when cut.
pub fn truncate(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        used += w;
        out.push(c);
    }
    if width > 0 {
        out.push('…');
    }
    out
}

/// `2026-11-30 05:35 UTC`: a time since the Unix epoch, in UTC to the minute (exports, the
/// sources list, comparisons).
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem / 60) % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_at_every_boundary() {
        let cases = [
            (0, "0.0s"),
            (49, "0.0s"),
            (50, "0.1s"),
            (850, "0.9s"),
            (999, "1.0s"),
            (1_000, "1.0s"),
            (1_049, "1.0s"),
            (1_050, "1.1s"),
            (3_140, "3.1s"),
            (9_949, "9.9s"),
            (9_950, "10.0s"),
            (59_949, "59.9s"),
            (59_950, "1m00s"),
            (59_960, "1m00s"),
            (60_000, "1m00s"),
            (125_000, "2m05s"),
            (3_599_499, "59m59s"),
            (3_599_500, "1h00m"),
            (3_599_960, "1h00m"),
            (3_600_000, "1h00m"),
            (3_629_999, "1h00m"),
            (3_630_000, "1h01m"),
            (7_380_000, "2h03m"),
            (360_000_000, "100h00m"),
        ];
        for (ms, want) in cases {
            assert_eq!(duration(ms), want, "{ms} ms");
        }
        // Never panics or overflows at the extreme.
        assert!(duration(u64::MAX).ends_with('m'));
    }

    #[test]
    fn clocks_count_whole_seconds_and_never_show_a_minute_early() {
        let cases = [
            (0, "00:00"),
            (999, "00:00"),
            (9_950, "00:09"),
            (14_000, "00:14"),
            (59_960, "00:59"),
            (60_000, "01:00"),
            (3_599_960, "59:59"),
            (3_600_000, "01:00:00"),
            (3_723_000, "01:02:03"),
            (360_000_000, "100:00:00"),
        ];
        for (ms, want) in cases {
            assert_eq!(clock(ms), want, "{ms} ms");
        }
    }

    #[test]
    fn token_counts_at_every_boundary() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1_000, "1.0k"),
            (1_049, "1.0k"),
            (1_050, "1.1k"),
            (9_999, "10.0k"),
            (12_345, "12.3k"),
            (999_949, "999.9k"),
            (999_950, "1.0M"),
            (999_960, "1.0M"),
            (1_000_000, "1.0M"),
            (1_450_000, "1.5M"),
            (999_950_000, "1.0G"),
            (2_500_000_000, "2.5G"),
        ];
        for (n, want) in cases {
            assert_eq!(tokens(n), want, "{n} tokens");
        }
        assert!(tokens(u64::MAX).ends_with('G'));
    }

    #[test]
    fn the_spinner_wraps_and_follows_the_clock() {
        assert_eq!(spinner(0), SPINNER[0]);
        assert_eq!(spinner(SPINNER.len() as u64), SPINNER[0]);
        assert_eq!(spinner(u64::MAX), SPINNER[(u64::MAX % 10) as usize]);
        assert_eq!(spinner_at(0), spinner_at(99));
        assert_eq!(spinner_at(100), SPINNER[1]);
    }

    #[test]
    fn truncation_counts_columns_and_marks_the_cut() {
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello", 4), "hel…");
        assert_eq!(truncate("hello", 1), "…");
        assert_eq!(truncate("hello", 0), "");
        // A wide glyph that would straddle the edge is left out whole.
        assert_eq!(truncate("日本語", 4), "日…");
    }

    #[test]
    fn every_status_has_a_distinct_glyph() {
        let all = [
            SubtaskStatus::Pending,
            SubtaskStatus::Running,
            SubtaskStatus::Retrying,
            SubtaskStatus::Succeeded,
            SubtaskStatus::Failed,
            SubtaskStatus::Blocked,
            SubtaskStatus::Cancelled,
        ];
        let mut glyphs: Vec<&str> = all.iter().map(|s| status_glyph(*s)).collect();
        glyphs.sort_unstable();
        glyphs.dedup();
        assert_eq!(glyphs.len(), all.len());
    }
}
