//! A run laid out over time: one track for the planner, one per subtask, one for the
//! synthesis, each made of the time it waited for a free slot, its calls and the back-offs
//! between them. From that: the critical path (the chain of dependencies that decided how long
//! the run took), how many calls were in flight, the time axis, the cells of each bar at
//! eighth-of-a-cell resolution, and the fixed-width text chart the reports end with.
//!
//! Pure data in, data out: no terminal, no I/O, no clock (the caller says what "now" is). The
//! dashboard and the reports fill a `Timeline` from what they know of a run; nothing here knows
//! about events or reports, so it sits below both.

use std::fmt::Write as _;
use std::ops::Range;

use crate::display::duration;

/// How one call ended, as far as its bar is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    Running,
    Succeeded,
    /// Failed, and the next attempt follows after this back-off.
    Retried {
        delay_ms: u64,
    },
    Failed,
    Cancelled,
}

/// One model call: when it started and ended (wall-clock ms), and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub start_ts: u64,
    /// `None` while it runs.
    pub end_ts: Option<u64>,
    pub end: CallEnd,
}

impl Call {
    /// Did it fail (retried, failed or cancelled)?
    pub fn failed(&self) -> bool {
        match self.end {
            CallEnd::Running | CallEnd::Succeeded => false,
            CallEnd::Retried { .. } | CallEnd::Failed | CallEnd::Cancelled => true,
        }
    }
}

/// What a track stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Planner,
    Subtask,
    Synthesis,
}

/// One row of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Track<'a> {
    pub kind: TrackKind,
    pub label: &'a str,
    pub glyph: &'static str,
    /// When it could have started (plan ready, or its last dependency finished); `None` when
    /// unknown, then derived from its dependencies.
    pub ready_ts: Option<u64>,
    /// More work is scheduled for it (pending, running or waiting to retry): its queue and
    /// back-off grow up to "now".
    pub open: bool,
    /// It has a result (for a subtask that took an earlier run's, without any call).
    pub succeeded: bool,
    calls: Range<usize>,
    deps: Range<usize>,
}

/// What a new track is, apart from its calls and dependencies (see [`Track`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    pub kind: TrackKind,
    pub label: &'a str,
    pub glyph: &'static str,
    pub ready_ts: Option<u64>,
    pub open: bool,
    pub succeeded: bool,
}

/// A run's tracks, their calls and dependencies, in flat vectors (three allocations a run).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Timeline<'a> {
    /// When the run started (wall-clock ms).
    pub start_ts: u64,
    /// When it ended, or "now" while it goes on.
    pub end_ts: u64,
    /// The concurrency limit on worker calls, when known.
    pub limit: Option<usize>,
    tracks: Vec<Track<'a>>,
    calls: Vec<Call>,
    deps: Vec<usize>,
}

/// What the run's shape says: the critical path and the calls in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Track indices along the critical path, first to last.
    pub critical: Vec<usize>,
    /// Time spent in calls and back-offs along the critical path.
    pub critical_ms: u64,
    /// The whole run.
    pub run_ms: u64,
    /// Mean worker calls in flight while workers could run (plan ready to the last worker).
    pub mean_in_flight: f64,
    pub peak_in_flight: usize,
}

/// What one cell of a bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Empty,
    /// Ready, waiting for a free slot.
    Queued,
    /// Waiting to retry after a failed call.
    Wait,
    /// A call that succeeded or runs, filling `eighths` of the cell from the left (1..=8).
    Call(u8),
    /// A call that failed.
    Failed,
    /// The last cell of a failed call, so that failed attempts side by side stay apart.
    FailedEnd,
}

/// Left-aligned blocks, one to eight eighths of a cell.
const EIGHTHS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];

impl Cell {
    /// The character the cell is drawn with: every kind has its own, so nothing relies on
    /// colour.
    pub fn glyph(self) -> char {
        match self {
            Cell::Empty => ' ',
            Cell::Queued => '░',
            Cell::Wait => '╌',
            Cell::Call(n) => EIGHTHS[usize::from(n.clamp(1, 8)) - 1],
            Cell::Failed => '▓',
            Cell::FailedEnd => '✗',
        }
    }
}

/// The chart's legend, as the text chart prints it.
pub const LEGEND: &str = "█ call  ▓✗ failed call  ░ queued for a slot  ╌ back-off  * critical path";

impl<'a> Timeline<'a> {
    pub fn new(start_ts: u64, end_ts: u64, limit: Option<usize>) -> Self {
        Self {
            start_ts,
            end_ts: end_ts.max(start_ts),
            limit,
            ..Self::default()
        }
    }

    /// Add a track; `deps` are indices of tracks added before it. Returns its index.
    pub fn push(
        &mut self,
        head: Head<'a>,
        calls: impl IntoIterator<Item = Call>,
        deps: impl IntoIterator<Item = usize>,
    ) -> usize {
        let c0 = self.calls.len();
        self.calls.extend(calls);
        let d0 = self.deps.len();
        self.deps.extend(deps);
        let Head {
            kind,
            label,
            glyph,
            ready_ts,
            open,
            succeeded,
        } = head;
        self.tracks.push(Track {
            kind,
            label,
            glyph,
            ready_ts,
            open,
            succeeded,
            calls: c0..self.calls.len(),
            deps: d0..self.deps.len(),
        });
        self.tracks.len() - 1
    }

    pub fn tracks(&self) -> &[Track<'a>] {
        &self.tracks
    }

    pub fn calls(&self, track: usize) -> &[Call] {
        self.tracks
            .get(track)
            .map_or(&[][..], |t| &self.calls[t.calls.clone()])
    }

    pub fn deps(&self, track: usize) -> &[usize] {
        self.tracks
            .get(track)
            .map_or(&[][..], |t| &self.deps[t.deps.clone()])
    }

    /// The tracks whose finish could have held `track` back: its dependencies; for a subtask
    /// without any, the planner; for the synthesis, every subtask.
    fn predecessors(&self, track: usize) -> impl Iterator<Item = usize> + '_ {
        let kind = self.tracks.get(track).map(|t| t.kind);
        let own = self.deps(track);
        let planner = (kind == Some(TrackKind::Subtask) && own.is_empty())
            .then(|| {
                self.tracks
                    .iter()
                    .position(|t| t.kind == TrackKind::Planner)
            })
            .flatten();
        let every_subtask = kind == Some(TrackKind::Synthesis) && own.is_empty();
        own.iter().copied().chain(planner).chain(
            self.tracks
                .iter()
                .enumerate()
                .filter(move |(_, t)| every_subtask && t.kind == TrackKind::Subtask)
                .map(|(i, _)| i),
        )
    }

    /// When a track's work ended: its last call's end, unless that call runs or is waiting
    /// to be retried.
    pub fn finish(&self, track: usize) -> Option<u64> {
        let last = self.calls(track).last()?;
        match last.end {
            CallEnd::Running | CallEnd::Retried { .. } => None,
            CallEnd::Succeeded | CallEnd::Failed | CallEnd::Cancelled => last.end_ts,
        }
    }

    /// Where a track's work reaches: its finish, or "now" while it goes on.
    fn reach(&self, track: usize) -> Option<u64> {
        if self.calls(track).is_empty() {
            return None;
        }
        self.finish(track).or(Some(self.end_ts))
    }

    /// When a track became ready: as given, else when its last predecessor succeeded (the
    /// run's start for the planner). `None` while a predecessor has not.
    pub fn ready(&self, track: usize) -> Option<u64> {
        let t = self.tracks.get(track)?;
        if let Some(ts) = t.ready_ts {
            return Some(ts);
        }
        if t.kind == TrackKind::Planner {
            return Some(self.start_ts);
        }
        let mut ready = Some(self.start_ts);
        for p in self.predecessors(track) {
            // A dependency that failed never makes its dependent ready; the synthesis waits
            // for every subtask to settle, however it ended.
            let done = match (t.kind, self.calls(p).last()) {
                (TrackKind::Synthesis, _) => self.finish(p),
                (_, _) if !self.tracks[p].succeeded => None,
                (_, Some(last)) => last.end_ts,
                // A result taken without a call was there as soon as the plan was.
                (_, None) => self.tracks[p].ready_ts.or_else(|| {
                    let planner = self
                        .tracks
                        .iter()
                        .position(|t| t.kind == TrackKind::Planner);
                    planner.and_then(|i| self.finish(i))
                }),
            };
            ready = ready.max(Some(done?));
        }
        ready
    }

    /// The chain of dependencies that decided the run's length, first track first: from the
    /// track that reached furthest (the synthesis, once it ran), back through whichever
    /// predecessor finished last, to the planner.
    pub fn critical_path(&self) -> Vec<usize> {
        let mut path = Vec::new();
        // The latest reach; of equals, the synthesis, then the call that started first (it
        // took longer to get there).
        let key = |i: usize| {
            let start = self.calls(i).first()?.start_ts;
            let synthesis = self.tracks[i].kind == TrackKind::Synthesis;
            Some((self.reach(i)?, synthesis, std::cmp::Reverse(start), i))
        };
        let last = (0..self.tracks.len()).filter_map(key).max();
        let Some((.., mut at)) = last else {
            return path;
        };
        path.push(at);
        // A dependency graph is acyclic, but a path can be no longer than the tracks anyway.
        while path.len() <= self.tracks.len() {
            match self.predecessors(at).filter_map(key).max() {
                Some((.., p)) => {
                    path.push(p);
                    at = p;
                }
                None => break,
            }
        }
        path.reverse();
        path
    }

    /// The critical path, with the time spent in calls and back-offs along it, and how many
    /// worker calls were in flight.
    pub fn summary(&self) -> Summary {
        let critical = self.critical_path();
        let critical_ms = critical
            .iter()
            .filter_map(|&i| {
                let first = self.calls(i).first()?.start_ts;
                Some(self.reach(i)?.saturating_sub(first))
            })
            .sum();
        let (mean_in_flight, peak_in_flight) = self.in_flight();
        Summary {
            critical,
            critical_ms,
            run_ms: self.end_ts.saturating_sub(self.start_ts),
            mean_in_flight,
            peak_in_flight,
        }
    }

    /// Mean and peak worker calls in flight. The mean is over the time workers could run:
    /// from the first subtask ready to the last worker call's end.
    fn in_flight(&self) -> (f64, usize) {
        let mut edges: Vec<(u64, i32)> = Vec::new();
        let mut busy = 0u64;
        let mut window: Option<(u64, u64)> = None;
        for (i, t) in self.tracks.iter().enumerate() {
            if t.kind != TrackKind::Subtask {
                continue;
            }
            for c in self.calls(i) {
                let end = c.end_ts.unwrap_or(self.end_ts).max(c.start_ts);
                edges.push((c.start_ts, 1));
                edges.push((end, -1));
                busy += end - c.start_ts;
                let from = self.ready(i).unwrap_or(c.start_ts).min(c.start_ts);
                window = Some(match window {
                    None => (from, end),
                    Some((a, b)) => (a.min(from), b.max(end)),
                });
            }
        }
        // Ends before starts at the same instant: a slot handed on is not two calls at once.
        edges.sort_unstable();
        let (mut now, mut peak) = (0i32, 0i32);
        for (_, step) in edges {
            now += step;
            peak = peak.max(now);
        }
        let mean = match window {
            Some((a, b)) if b > a => busy as f64 / (b - a) as f64,
            _ => 0.0,
        };
        (mean, peak.max(0) as usize)
    }

    /// The cells of a track's bar, `out.len()` cells wide over the scale `0..span_ms` from
    /// the run's start. Queue and back-off first, calls over them: a call's end is drawn to an
    /// eighth of a cell; its start is taken back to the start of its cell.
    pub fn bar(&self, track: usize, span_ms: u64, out: &mut [Cell]) {
        out.fill(Cell::Empty);
        let Some(t) = self.tracks.get(track) else {
            return;
        };
        let width = out.len() as u64;
        let span = span_ms.max(1);
        let eighths = |ts: u64| -> u64 {
            let ms = ts.saturating_sub(self.start_ts).min(span);
            (u128::from(ms) * u128::from(width) * 8 / u128::from(span)) as u64
        };
        let mut shade = |from: u64, to: u64, cell: Cell| {
            let (a, b) = ((eighths(from) + 4) / 8, (eighths(to) + 4) / 8);
            for c in a..b.min(width) {
                out[c as usize] = cell;
            }
        };
        let calls = self.calls(track);
        // The queue: ready until the first call, or until now while it waits.
        if let Some(ready) = self.ready(track) {
            match calls.first() {
                Some(first) => shade(ready, first.start_ts, Cell::Queued),
                None if t.open => shade(ready, self.end_ts, Cell::Queued),
                None => {}
            }
        }
        for (i, c) in calls.iter().enumerate() {
            if let (CallEnd::Retried { delay_ms }, Some(end)) = (c.end, c.end_ts) {
                let until = match calls.get(i + 1) {
                    Some(next) => next.start_ts,
                    None if t.open => end.saturating_add(delay_ms).min(self.end_ts),
                    None => end,
                };
                shade(end, until, Cell::Wait);
            }
        }
        for c in calls {
            let (s8, e8) = (
                eighths(c.start_ts),
                eighths(c.end_ts.unwrap_or(self.end_ts)),
            );
            let first = s8 / 8;
            if c.failed() {
                let last = e8.div_ceil(8).max(first + 1);
                for cell in first..last.min(width) {
                    out[cell as usize] = Cell::Failed;
                }
                if let Some(end) = out.get_mut(last.min(width).saturating_sub(1) as usize)
                    && last.min(width) > first
                {
                    *end = Cell::FailedEnd;
                }
                continue;
            }
            let full = e8 / 8;
            for cell in first..full.min(width) {
                out[cell as usize] = Cell::Call(8);
            }
            let part = (e8 % 8) as u8;
            if full < width && (part > 0 || full == first) {
                // A call too short for an eighth still shows as one.
                out[full as usize] = Cell::Call(part.max(1));
            }
        }
    }
}

/// Tick steps the axis may use, smallest first.
const STEPS_MS: [u64; 18] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000,
    900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000,
];

/// A tick's label: `0`, `500ms`, `5s`, `1m`, `1m30s`, `2h`.
pub fn tick_label(ms: u64) -> String {
    let mut out = String::new();
    let _ = write_tick(&mut out, ms);
    out
}

/// How wide a tick's label is, without making it.
fn tick_width(ms: u64) -> usize {
    struct Count(usize);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.chars().count();
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = write_tick(&mut count, ms);
    count.0
}

fn write_tick(out: &mut impl std::fmt::Write, ms: u64) -> std::fmt::Result {
    if ms == 0 {
        out.write_str("0")
    } else if ms < 1_000 {
        write!(out, "{ms}ms")
    } else if !ms.is_multiple_of(1_000) {
        write!(out, "{}.{}s", ms / 1_000, (ms % 1_000) / 100)
    } else if ms < 60_000 {
        write!(out, "{}s", ms / 1_000)
    } else if ms < 3_600_000 {
        match (ms / 60_000, (ms % 60_000) / 1_000) {
            (m, 0) => write!(out, "{m}m"),
            (m, s) => write!(out, "{m}m{s}s"),
        }
    } else {
        match (ms / 3_600_000, (ms % 3_600_000) / 60_000) {
            (h, 0) => write!(out, "{h}h"),
            (h, m) => write!(out, "{h}h{m}m"),
        }
    }
}

/// The smallest tick step whose labels fit between ticks over `width` cells for `span_ms`.
pub fn tick_step(span_ms: u64, width: usize) -> u64 {
    let span = span_ms.max(1);
    for step in STEPS_MS {
        // More ticks than cells can never fit; this also bounds the loop below by the width.
        if span / step > width as u64 {
            continue;
        }
        let room = (1..=span / step)
            .map(|n| tick_width(n * step) as u64 + 2)
            .max()
            .unwrap_or(2);
        if step * width as u64 >= room * span {
            return step;
        }
    }
    STEPS_MS[STEPS_MS.len() - 1]
}

/// The axis under (or over) the bars: tick labels at their columns, as many as fit.
pub fn axis(span_ms: u64, width: usize) -> String {
    let span = span_ms.max(1);
    let step = tick_step(span, width);
    let mut line = vec![' '; width];
    let mut free_from = 0usize;
    let mut t = 0u64;
    let mut label = String::new();
    while t <= span {
        let col = (u128::from(t) * width as u128 / u128::from(span)) as usize;
        if col >= width {
            break;
        }
        label.clear();
        let _ = write_tick(&mut label, t);
        let len = label.chars().count();
        if col >= free_from && col + len <= width {
            for (i, ch) in label.chars().enumerate() {
                line[col + i] = ch;
            }
            free_from = col + len + 1;
        }
        t += step;
    }
    line.into_iter().collect()
}

/// `critical path 9.1s of 12.0s · in flight mean 1.6, peak 3 of 4`
pub fn footer(summary: &Summary, limit: Option<usize>) -> String {
    let limit = limit.map(|l| format!(" of {l}")).unwrap_or_default();
    format!(
        "critical path {} of {} · in flight mean {:.1}, peak {}{limit}",
        duration(summary.critical_ms),
        duration(summary.run_ms),
        summary.mean_in_flight,
        summary.peak_in_flight,
    )
}

/// The footer in few columns: `path 9.0s/12.0s · flight 1.6 ≤3/4`.
pub fn footer_short(summary: &Summary, limit: Option<usize>) -> String {
    let limit = limit.map(|l| format!("/{l}")).unwrap_or_default();
    format!(
        "path {}/{} · in flight {:.1}, peak {}{limit}",
        duration(summary.critical_ms),
        duration(summary.run_ms),
        summary.mean_in_flight,
        summary.peak_in_flight,
    )
}

/// The chart as fixed-width text, `width` columns in all: a label column (`*` on the critical
/// path), the bars, the axis, the critical path spelt out, the footer and the legend.
pub fn text_chart(timeline: &Timeline<'_>, width: usize) -> String {
    let summary = timeline.summary();
    let label_w = timeline
        .tracks
        .iter()
        .map(|t| t.label.chars().count())
        .max()
        .unwrap_or(0)
        .min(16);
    // Mark, glyph, space, label, space.
    let bar_w = width.saturating_sub(label_w + 4).max(10);
    let span = timeline.end_ts.saturating_sub(timeline.start_ts);
    let mut cells = vec![Cell::Empty; bar_w];
    let mut out = String::new();
    for (i, t) in timeline.tracks.iter().enumerate() {
        timeline.bar(i, span, &mut cells);
        let mark = if summary.critical.contains(&i) {
            '*'
        } else {
            ' '
        };
        let label: String = t.label.chars().take(label_w).collect();
        let bar: String = cells.iter().map(|c| c.glyph()).collect();
        let _ = writeln!(
            out,
            "{mark}{} {label:<label_w$} {}",
            t.glyph,
            bar.trim_end()
        );
    }
    let _ = writeln!(
        out,
        "{:pad$}{}",
        "",
        axis(span, bar_w).trim_end(),
        pad = label_w + 4
    );
    out.push('\n');
    if !summary.critical.is_empty() {
        let names: Vec<&str> = summary
            .critical
            .iter()
            .filter_map(|&i| timeline.tracks.get(i).map(|t| t.label))
            .collect();
        let _ = writeln!(out, "critical path: {}", names.join(" → "));
    }
    let _ = writeln!(out, "{}", footer(&summary, timeline.limit));
    let _ = writeln!(out, "{LEGEND}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(start: u64, end: u64) -> Call {
        Call {
            start_ts: start,
            end_ts: Some(end),
            end: CallEnd::Succeeded,
        }
    }

    fn failed(start: u64, end: u64) -> Call {
        Call {
            start_ts: start,
            end_ts: Some(end),
            end: CallEnd::Failed,
        }
    }

    fn retried(start: u64, end: u64, delay_ms: u64) -> Call {
        Call {
            start_ts: start,
            end_ts: Some(end),
            end: CallEnd::Retried { delay_ms },
        }
    }

    fn head(kind: TrackKind, label: &str, ready_ts: Option<u64>) -> Head<'_> {
        Head {
            kind,
            label,
            glyph: "✓",
            ready_ts,
            open: false,
            succeeded: true,
        }
    }

    /// A planner from 0 to `plan_ms`, then the subtasks as given (label, deps, calls), then a
    /// synthesis over them from `synth.0` to `synth.1`.
    fn run<'a>(
        plan_ms: u64,
        subtasks: &[(&'a str, &[usize], Vec<Call>)],
        synth: Option<(u64, u64)>,
        end: u64,
    ) -> Timeline<'a> {
        let mut t = Timeline::new(0, end, Some(2));
        t.push(
            head(TrackKind::Planner, "planner", Some(0)),
            [ok(0, plan_ms)],
            [],
        );
        for (label, deps, calls) in subtasks {
            // Subtask indices in the test count from 0; tracks have the planner first.
            let succeeded = calls.last().is_some_and(|c| c.end == CallEnd::Succeeded);
            t.push(
                Head {
                    succeeded,
                    ..head(TrackKind::Subtask, label, None)
                },
                calls.iter().copied(),
                deps.iter().map(|d| d + 1),
            );
        }
        if let Some((a, b)) = synth {
            t.push(
                head(TrackKind::Synthesis, "synthesis", None),
                [ok(a, b)],
                [],
            );
        }
        t
    }

    fn labels(t: &Timeline<'_>, path: &[usize]) -> Vec<String> {
        path.iter()
            .map(|&i| t.tracks()[i].label.to_owned())
            .collect()
    }

    #[test]
    fn in_a_chain_every_link_is_on_the_critical_path() {
        let t = run(
            1_000,
            &[
                ("a", &[], vec![ok(1_000, 3_000)]),
                ("b", &[0], vec![ok(3_000, 4_000)]),
                ("c", &[1], vec![ok(4_000, 7_000)]),
            ],
            Some((7_000, 8_000)),
            8_000,
        );
        let s = t.summary();
        assert_eq!(
            labels(&t, &s.critical),
            ["planner", "a", "b", "c", "synthesis"]
        );
        assert_eq!(s.critical_ms, 8_000);
        assert_eq!(s.peak_in_flight, 1);
    }

    #[test]
    fn in_a_diamond_the_slower_branch_decides() {
        // a, then b (slow) and c (quick) side by side, then d after both.
        let t = run(
            500,
            &[
                ("a", &[], vec![ok(500, 1_500)]),
                ("b", &[0], vec![ok(1_500, 6_000)]),
                ("c", &[0], vec![ok(1_500, 2_500)]),
                ("d", &[1, 2], vec![ok(6_000, 7_000)]),
            ],
            Some((7_000, 8_000)),
            8_000,
        );
        let s = t.summary();
        assert_eq!(
            labels(&t, &s.critical),
            ["planner", "a", "b", "d", "synthesis"]
        );
        assert_eq!(s.peak_in_flight, 2);
        // d became ready when b, its later dependency, finished.
        assert_eq!(t.ready(4), Some(6_000));
    }

    #[test]
    fn a_failed_dependency_that_ended_last_is_on_the_path_and_its_blocked_dependent_is_not() {
        // a fails late; b depended on it and never ran; c succeeded early.
        let t = run(
            1_000,
            &[
                ("a", &[], vec![failed(1_000, 9_000)]),
                ("b", &[0], vec![]),
                ("c", &[], vec![ok(1_000, 2_000)]),
            ],
            Some((9_000, 10_000)),
            10_000,
        );
        let s = t.summary();
        assert_eq!(labels(&t, &s.critical), ["planner", "a", "synthesis"]);
        assert_eq!(
            t.ready(2),
            None,
            "b's dependency never finished well or not"
        );
        let mut cells = [Cell::Empty; 10];
        t.bar(2, 10_000, &mut cells);
        assert!(cells.iter().all(|c| *c == Cell::Empty), "{cells:?}");
    }

    #[test]
    fn a_retried_subtask_counts_its_back_off_on_the_path() {
        // a: a call that failed after 1s, 2s of back-off, then 3s that succeeded.
        let t = run(
            1_000,
            &[
                (
                    "a",
                    &[],
                    vec![retried(1_000, 2_000, 2_000), ok(4_000, 7_000)],
                ),
                ("b", &[], vec![ok(1_000, 3_000)]),
            ],
            Some((7_000, 8_000)),
            8_000,
        );
        let s = t.summary();
        assert_eq!(labels(&t, &s.critical), ["planner", "a", "synthesis"]);
        // 1s planner + (1s + 2s wait + 3s) + 1s synthesis.
        assert_eq!(s.critical_ms, 8_000);
        let mut cells = [Cell::Empty; 8];
        t.bar(1, 8_000, &mut cells);
        assert_eq!(
            cells.map(Cell::glyph).iter().collect::<String>(),
            " ✗╌╌███ "
        );
    }

    #[test]
    fn a_result_taken_without_a_call_makes_its_dependent_ready_when_the_plan_is() {
        // `a` took an earlier run's result (no call); `b` depends on it.
        let mut t = run(1_000, &[("b", &[], vec![ok(1_000, 2_000)])], None, 2_000);
        let a = t.push(head(TrackKind::Subtask, "a", None), [], []);
        let c = t.push(head(TrackKind::Subtask, "c", None), [], [a]);
        assert_eq!(t.ready(c), Some(1_000));
        // Without a result, it holds its dependent back.
        let d = t.push(
            Head {
                succeeded: false,
                ..head(TrackKind::Subtask, "d", None)
            },
            [],
            [],
        );
        let e = t.push(head(TrackKind::Subtask, "e", None), [], [d]);
        assert_eq!(t.ready(e), None);
    }

    #[test]
    fn a_call_ending_inside_a_cell_ends_in_an_eighth_block_and_waiting_is_shaded() {
        let mut t = Timeline::new(0, 10_000, None);
        t.push(
            head(TrackKind::Planner, "planner", None),
            [ok(0, 1_000)],
            [],
        );
        // Ready at 1s, starts at 3s, ends at 6.5s: 10 cells of 1s.
        t.push(
            head(TrackKind::Subtask, "a", Some(1_000)),
            [ok(3_000, 6_500)],
            [],
        );
        let mut cells = [Cell::Empty; 10];
        t.bar(1, 10_000, &mut cells);
        let text: String = cells.map(Cell::glyph).iter().collect();
        assert_eq!(text, " ░░███▌   ");
    }

    #[test]
    fn concurrency_is_the_mean_and_peak_of_worker_calls_in_flight() {
        let t = run(
            0,
            &[
                ("a", &[], vec![ok(0, 4_000)]),
                ("b", &[], vec![ok(0, 2_000)]),
                ("c", &[], vec![ok(2_000, 4_000)]),
            ],
            None,
            4_000,
        );
        let s = t.summary();
        // b hands its slot to c at 2s: two at once, never three.
        assert_eq!(s.peak_in_flight, 2);
        assert!(
            (s.mean_in_flight - 2.0).abs() < 1e-9,
            "{}",
            s.mean_in_flight
        );
        assert_eq!(
            footer(&s, Some(2)),
            "critical path 4.0s of 4.0s · in flight mean 2.0, peak 2 of 2"
        );
        assert_eq!(
            footer_short(&s, Some(2)),
            "path 4.0s/4.0s · in flight 2.0, peak 2/2"
        );
    }

    #[test]
    fn ticks_are_round_and_fit_the_width() {
        assert_eq!(tick_step(60_000, 60), 5_000);
        assert_eq!(tick_step(5_000, 60), 1_000);
        assert_eq!(tick_step(600_000, 60), 60_000);
        assert_eq!(tick_step(3_000, 60), 500);
        assert_eq!(tick_label(90_000), "1m30s");
        assert_eq!(tick_label(1_500), "1.5s");
        assert_eq!(
            axis(10_000, 40).trim_end(),
            "0       2s      4s      6s      8s"
        );
        // A run of a few hours on a narrow pane still gets a round step.
        assert_eq!(tick_step(3 * 3_600_000, 40), 3_600_000);
    }
}
