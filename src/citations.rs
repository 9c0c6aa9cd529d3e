//! Citations in a report or a worker's answer: reading them, splitting a report into the
//! paragraphs a reader moves through, and finding citations that point at nothing the run
//! retrieved. Pure functions over text; it owns the citation syntax below and must not do I/O,
//! import anything of the crate but `protocol`, or rewrite the text it reads.
//!
//! # Syntax
//!
//! A citation is a pair of square brackets outside code (fenced blocks and inline code spans
//! are never read for citations). Inside, items are separated by commas or semicolons:
//!
//! - **Sources** by their run-wide number: `[3]`, `[1, 3]`, `[1][3]`, a range `[1-3]` (also
//!   with an en dash), with an optional word: `[source 3]`, `[Sources: 1, 2]`, a footnote
//!   caret `[^3]`. The number is the one the tool result gave the worker (`Source [3]: …`);
//!   four digits and more (`[2019]`) are years, not sources.
//! - **Subtasks** by id, explicitly: `[subtask: market-size]`, `[subtask market-size]`,
//!   `[subtasks: a, b]`, `[§a]`, `[§a, §b]`. A bare `[market-size]` also counts when it is
//!   the id of a subtask of the run (compared without case) and not made of digits only: an
//!   id of digits needs the explicit form, since `[2]` is always source 2.
//! - **Files**, only in the explicit form `[file: src/x.rs]` (`:12`, `:12-20` or `#L12` after
//!   the path name lines and are ignored when matching). A path in prose or in code is never
//!   a citation, so a review that names `src/x.rs:12` flags nothing.
//! - **URLs** anywhere outside code, bare, in `<…>` or as a markdown link's target.
//!
//! One bracket may mix kinds (`[§a; 2, 4]`): a word applies to the items after it until the
//! next word. A bracket with an item that reads as none of these (`[note]`, `[x]`, `[1, see
//! above]`, `[Source: Wikipedia]`) is not a citation at all, and `items[0]`-style indexing
//! after an identifier is not read as source 0.
//!
//! # Unverified
//!
//! [`unverified`] reports a `[n]` with no source numbered `n`, a cited subtask id the run
//! does not have, a `[file: …]` that no source read, and a URL no source retrieved. URLs are
//! compared normalised: scheme and host without case, no default port, no fragment, no
//! trailing slash. A fetch that was redirected should be passed twice, once under the URL
//! asked for and once under the final one, with the same number; files attached as context
//! should be passed as `File` sources (number 0) so that citing them is not flagged.

use std::collections::HashSet;
use std::ops::Range;

use crate::protocol::{Source, SourceKind, SubtaskId};

/// A block of a report a reader moves through: a paragraph of prose, one list item (with its
/// continuation lines), a heading, a table row, or a code block (which cites nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph {
    /// Indexes into `report.lines()`, end exclusive.
    pub lines: Range<usize>,
    /// Subtasks of the run it cites, as their ids are spelt in the plan, each once, in order.
    pub subtasks: Vec<SubtaskId>,
    /// Source numbers it cites, each once, in order of first citation.
    pub sources: Vec<u32>,
}

/// A citation that points at nothing the run retrieved or has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unverified {
    /// The citation as the reader sees it: `[9]`, `https://…`, `subtask: x`, `file: a.rs`.
    pub cited: String,
    /// The line it is on, from 1 as an editor numbers lines.
    pub line: usize,
    /// Why it is flagged, in a few words.
    pub why: String,
}

/// One thing a text cites.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Cited {
    Source(u32),
    /// As written; [`classify`] has already mapped a known id to its spelling in the plan.
    Subtask(String),
    File(String),
    Url(String),
}

/// The report's paragraphs with what each cites. `known` are the run's subtask ids, for the
/// bare `[id]` form and to keep ids the run does not have out of [`Paragraph::subtasks`].
pub fn paragraphs(report: &str, known: &[SubtaskId]) -> Vec<Paragraph> {
    let mut out = Vec::new();
    let mut current: Option<(usize, Vec<Cited>)> = None;
    let mut fence: Option<(usize, Fence)> = None;
    let mut count = 0;
    let flush = |current: &mut Option<(usize, Vec<Cited>)>, end: usize, out: &mut Vec<_>| {
        if let Some((start, cited)) = current.take() {
            out.push(paragraph(start..end, &cited, known));
        }
    };
    for (i, line) in report.lines().enumerate() {
        count = i + 1;
        if let Some((start, open)) = &fence {
            if open.closed_by(line) {
                out.push(paragraph(*start..i + 1, &[], known));
                fence = None;
            }
            continue;
        }
        if let Some(open) = Fence::opened_by(line) {
            flush(&mut current, i, &mut out);
            fence = Some((i, open));
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || is_rule(trimmed) {
            flush(&mut current, i, &mut out);
            continue;
        }
        let block = trimmed.trim_start_matches('>').trim_start();
        if is_heading(block) {
            flush(&mut current, i, &mut out);
            out.push(paragraph(i..i + 1, &cited_in_line(line, known), known));
            continue;
        }
        let starts_block =
            is_list_item(block) || (block.starts_with('|') && !is_table_separator(block));
        if starts_block {
            flush(&mut current, i, &mut out);
        }
        let entry = current.get_or_insert_with(|| (i, Vec::new()));
        entry.1.extend(cited_in_line(line, known));
    }
    if let Some((start, _)) = fence {
        out.push(paragraph(start..count, &[], known));
    }
    flush(&mut current, count, &mut out);
    out
}

/// The source numbers a text cites, each once, in order of first citation: what a worker's
/// answer rests on.
pub fn sources_cited(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for (_, cited) in scan(text, &[]) {
        if let Cited::Source(n) = cited
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

/// Every citation in `report` that points at nothing in `sources` or `known`, in order of
/// the text, each once per line. See the module's doc for what counts.
pub fn unverified(report: &str, sources: &[Source], known: &[SubtaskId]) -> Vec<Unverified> {
    let numbers: HashSet<u32> = sources
        .iter()
        .map(|s| s.number)
        .filter(|n| *n > 0)
        .collect();
    let urls: HashSet<String> = sources
        .iter()
        .filter(|s| s.kind == SourceKind::Url)
        .map(|s| normalise_url(&s.location))
        .collect();
    let files: Vec<String> = sources
        .iter()
        .filter(|s| s.kind == SourceKind::File)
        .map(|s| normalise_path(&s.location))
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (line, cited) in scan(report, known) {
        if !seen.insert((line, cited.clone())) {
            continue;
        }
        let flagged = match &cited {
            Cited::Source(n) if !numbers.contains(n) => {
                Some((format!("[{n}]"), format!("no source [{n}] in this run")))
            }
            Cited::Source(_) => None,
            Cited::Subtask(id) if !known.iter().any(|k| k.as_str() == id) => {
                Some((format!("subtask: {id}"), "no such subtask".to_owned()))
            }
            Cited::Subtask(_) => None,
            Cited::File(path) if !file_known(&files, path) => {
                Some((format!("file: {path}"), "not read in this run".to_owned()))
            }
            Cited::File(_) => None,
            Cited::Url(url) if !urls.contains(&normalise_url(url)) => {
                Some((url.clone(), "not retrieved in this run".to_owned()))
            }
            Cited::Url(_) => None,
        };
        if let Some((cited, why)) = flagged {
            out.push(Unverified {
                cited,
                line: line + 1,
                why,
            });
        }
    }
    out
}

/// A URL in the form citations are compared in: scheme and host lower case, no default port,
/// no fragment, no trailing slash.
pub fn normalise_url(url: &str) -> String {
    let url = url.trim();
    let url = url.split('#').next().unwrap_or(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.trim_end_matches('/').to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let mut authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => Some(":80"),
        "https" => Some(":443"),
        _ => None,
    };
    if let Some(port) = default_port
        && authority.ends_with(port)
    {
        authority.truncate(authority.len() - port.len());
    }
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let path = path.trim_end_matches('/');
    match query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    }
}

fn paragraph(lines: Range<usize>, cited: &[Cited], known: &[SubtaskId]) -> Paragraph {
    let mut subtasks: Vec<SubtaskId> = Vec::new();
    let mut sources: Vec<u32> = Vec::new();
    for c in cited {
        match c {
            Cited::Source(n) => {
                if !sources.contains(n) {
                    sources.push(*n);
                }
            }
            Cited::Subtask(id) => {
                if let Some(k) = known.iter().find(|k| k.as_str() == id)
                    && !subtasks.contains(k)
                {
                    subtasks.push(k.clone());
                }
            }
            Cited::File(_) | Cited::Url(_) => {}
        }
    }
    Paragraph {
        lines,
        subtasks,
        sources,
    }
}

/// Every citation outside code, with the index of its line.
fn scan(text: &str, known: &[SubtaskId]) -> Vec<(usize, Cited)> {
    let mut out = Vec::new();
    let mut fence: Option<Fence> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(open) = &fence {
            if open.closed_by(line) {
                fence = None;
            }
            continue;
        }
        if let Some(open) = Fence::opened_by(line) {
            fence = Some(open);
            continue;
        }
        out.extend(cited_in_line(line, known).into_iter().map(|c| (i, c)));
    }
    out
}

/// The citations of one line outside a code block, in order.
fn cited_in_line(line: &str, known: &[SubtaskId]) -> Vec<Cited> {
    let line = without_code_spans(line);
    let mut found: Vec<(usize, Cited)> = Vec::new();
    for (at, content) in brackets(&line) {
        if let Some(cited) = classify(content, known) {
            found.extend(cited.into_iter().map(|c| (at, c)));
        }
    }
    for (at, url) in urls(&line) {
        found.push((at, Cited::Url(url)));
    }
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, c)| c).collect()
}

/// The line with inline code spans blanked out (same length, so positions hold).
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find('`') {
        out.push_str(&rest[..open]);
        let run = rest[open..].len() - rest[open..].trim_start_matches('`').len();
        let after = &rest[open + run..];
        let marker = "`".repeat(run);
        // The closing run must be exactly as long as the opening one.
        let close = after.match_indices(&marker).find(|(at, _)| {
            !after[at + run..].starts_with('`') && (*at == 0 || !after[..*at].ends_with('`'))
        });
        match close {
            Some((at, _)) => {
                let span = run + at + run;
                out.extend(std::iter::repeat_n(' ', span));
                rest = &rest[open + span..];
            }
            None => {
                // An unclosed run is literal text; nothing after it is code.
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Innermost `[…]` pairs on a line: their position and content. `\[` is not a bracket;
/// `name[0]`-style indexing is skipped.
fn brackets(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = line[from..].find('[').map(|at| from + at) {
        let start = open + 1;
        let Some(close) = line[start..].find(['[', ']']).map(|at| start + at) else {
            break;
        };
        if line[close..].starts_with('[') {
            from = close;
            continue;
        }
        from = close + 1;
        if line[..open].ends_with('\\') || looks_like_indexing(&line[..open], &line[start..close]) {
            continue;
        }
        out.push((open, &line[start..close]));
    }
    out
}

/// `items[0]`, `a.b[2]`, `f(x)[1]`: an index after an identifier, not a citation.
fn looks_like_indexing(before: &str, content: &str) -> bool {
    let Some(last) = before.chars().last() else {
        return false;
    };
    if !(last.is_alphanumeric() || last == '_' || last == ')') {
        return false;
    }
    let word = before.rsplit(char::is_whitespace).next().unwrap_or(before);
    content.trim() == "0" || word.contains(['_', '.', '(', ':', '/'])
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Source,
    Subtask,
    File,
}

/// What a bracket's content cites, or `None` when it is not a citation.
fn classify(content: &str, known: &[SubtaskId]) -> Option<Vec<Cited>> {
    let content = content.trim();
    let content = content.strip_prefix('^').unwrap_or(content);
    if content.is_empty() {
        return None;
    }
    let mut mode: Option<Mode> = None;
    let mut out = Vec::new();
    let mut any = false;
    for raw in content.split([',', ';']) {
        let mut item = raw.trim();
        if item.is_empty() {
            continue;
        }
        if let Some((word, rest)) = prefix(item) {
            mode = Some(word);
            item = rest;
        }
        if item.contains("://") && !item.contains(char::is_whitespace) {
            // The URL scan reports it; here it only keeps the bracket a citation.
            any = true;
            continue;
        }
        match mode {
            Some(Mode::Source) => out.extend(numbers(item)?.into_iter().map(Cited::Source)),
            Some(Mode::Subtask) => {
                let id = item.trim_start_matches('§').trim();
                if id.is_empty() || id.contains(char::is_whitespace) {
                    return None;
                }
                out.push(Cited::Subtask(spelt(id, known)));
            }
            Some(Mode::File) => {
                if item.is_empty() || item.contains(char::is_whitespace) {
                    return None;
                }
                out.push(Cited::File(item.to_owned()));
            }
            None => {
                if let Some(n) = numbers(item) {
                    out.extend(n.into_iter().map(Cited::Source));
                } else if let Some(k) = known_id(item, known) {
                    out.push(Cited::Subtask(k.as_str().to_owned()));
                } else {
                    return None;
                }
            }
        }
        any = true;
    }
    any.then_some(out)
}

/// A leading word that says what the items after it are, and the text after it. `file`
/// needs its colon, and `source`/`subtask` without one take a single token, so prose in
/// brackets (`[file not found]`, `[subtask was slow]`) is not taken for a citation.
fn prefix(item: &str) -> Option<(Mode, &str)> {
    if let Some(rest) = item.strip_prefix('§') {
        return Some((Mode::Subtask, rest.trim_start()));
    }
    const WORDS: &[(&str, Mode)] = &[
        ("sources", Mode::Source),
        ("source", Mode::Source),
        ("src", Mode::Source),
        ("subtasks", Mode::Subtask),
        ("subtask", Mode::Subtask),
        ("files", Mode::File),
        ("file", Mode::File),
    ];
    for (word, mode) in WORDS {
        let Some(head) = item.get(..word.len()) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(word) {
            continue;
        }
        let rest = &item[word.len()..];
        if let Some(after) = rest.trim_start().strip_prefix(':') {
            return Some((*mode, after.trim_start()));
        }
        let single = rest.trim();
        let spaced = rest.starts_with(char::is_whitespace) || rest.starts_with('#');
        if *mode != Mode::File && spaced && !single.is_empty() && !single.contains(' ') {
            return Some((*mode, single.trim_start_matches('#')));
        }
        return None;
    }
    None
}

/// `3`, `1-3`, `1–3`: the numbers, or `None` when the item is not that.
fn numbers(item: &str) -> Option<Vec<u32>> {
    let item = item.trim();
    // A run reads tens of sources, not a thousand: `[2019]` is a year.
    let one = |s: &str| -> Option<u32> {
        let s = s.trim();
        if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if let Some(n) = one(item) {
        return Some(vec![n]);
    }
    let (a, b) = item.split_once(['-', '–', '—'])?;
    let (a, b) = (one(a)?, one(b)?);
    // A long or backwards range is not a run's sources.
    (a <= b && b - a <= 50).then(|| (a..=b).collect())
}

fn known_id<'a>(item: &str, known: &'a [SubtaskId]) -> Option<&'a SubtaskId> {
    known.iter().find(|k| k.as_str().eq_ignore_ascii_case(item))
}

/// A subtask id as the plan spells it when the run has it, else as written.
fn spelt(id: &str, known: &[SubtaskId]) -> String {
    known_id(id, known)
        .map(|k| k.as_str().to_owned())
        .unwrap_or_else(|| id.to_owned())
}

/// Bare URLs on a line (also inside `<…>` and markdown links), trailing punctuation and
/// unbalanced closing brackets left out.
fn urls(line: &str) -> Vec<(usize, String)> {
    let lower = line.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = ["http://", "https://"]
        .iter()
        .filter_map(|scheme| lower[from..].find(scheme).map(|i| from + i))
        .min()
    {
        let preceded = line[..at].chars().last();
        let end = line[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`' | '|'))
            .map(|i| at + i)
            .unwrap_or(line.len());
        from = end.max(at + 1);
        if preceded.is_some_and(|c| c.is_alphanumeric()) {
            continue;
        }
        let url = trim_url(&line[at..end]);
        if url.len() > "https://".len() {
            out.push((at, url.to_owned()));
        }
    }
    out
}

fn trim_url(mut url: &str) -> &str {
    loop {
        let before = url.len();
        url = url.trim_end_matches(['.', ',', ';', ':', '!', '?', '*', '_', '\'', '"']);
        for (open, close) in [('(', ')'), ('[', ']')] {
            if url.ends_with(close) && url.matches(close).count() > url.matches(open).count() {
                url = &url[..url.len() - 1];
            }
        }
        if url.len() == before {
            return url;
        }
    }
}

fn normalise_path(path: &str) -> String {
    let path = path.trim();
    let path = path.split("#L").next().unwrap_or(path);
    // `a.rs:12` or `a.rs:12-20` names lines of the file.
    let path = match path.rsplit_once(':') {
        Some((head, lines))
            if !head.is_empty()
                && !lines.is_empty()
                && lines.bytes().all(|b| b.is_ascii_digit() || b == b'-') =>
        {
            head
        }
        _ => path,
    };
    let mut path = path.replace('\\', "/");
    while let Some(rest) = path.strip_prefix("./") {
        path = rest.to_owned();
    }
    path.trim_end_matches('/').to_owned()
}

/// A cited path matches a read one when they are equal or one ends with the other at a `/`
/// (the model names `src/x.rs`, the tool recorded the whole path).
fn file_known(files: &[String], cited: &str) -> bool {
    let cited = normalise_path(cited);
    files.iter().any(|f| {
        f == &cited || f.ends_with(&format!("/{cited}")) || cited.ends_with(&format!("/{f}"))
    })
}

/// An opening code fence: its character and length.
struct Fence {
    ch: char,
    len: usize,
}

impl Fence {
    fn opened_by(line: &str) -> Option<Fence> {
        let t = line.trim_start().trim_start_matches('>').trim_start();
        let ch = t.chars().next().filter(|c| *c == '`' || *c == '~')?;
        let len = t.len() - t.trim_start_matches(ch).len();
        (len >= 3).then_some(Fence { ch, len })
    }

    fn closed_by(&self, line: &str) -> bool {
        let t = line.trim().trim_start_matches('>').trim();
        let len = t.len() - t.trim_start_matches(self.ch).len();
        len >= self.len && t.chars().all(|c| c == self.ch)
    }
}

fn is_heading(t: &str) -> bool {
    let hashes = t.len() - t.trim_start_matches('#').len();
    (1..=6).contains(&hashes) && (t.len() == hashes || t[hashes..].starts_with(' '))
}

fn is_rule(t: &str) -> bool {
    let Some(ch) = t.chars().next().filter(|c| matches!(c, '-' | '*' | '_')) else {
        return false;
    };
    t.chars().filter(|c| *c == ch).count() >= 3 && t.chars().all(|c| c == ch || c == ' ')
}

fn is_list_item(t: &str) -> bool {
    if let Some(rest) = t.strip_prefix(['-', '*', '+']) {
        return rest.is_empty() || rest.starts_with(' ');
    }
    let digits = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    (1..=9).contains(&digits)
        && t[digits..]
            .strip_prefix(['.', ')'])
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
}

fn is_table_separator(t: &str) -> bool {
    t.contains('-') && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<SubtaskId> {
        list.iter().map(|s| SubtaskId::from(*s)).collect()
    }

    fn url(number: u32, location: &str) -> Source {
        Source {
            number,
            kind: SourceKind::Url,
            location: location.into(),
            bytes: 10,
            status: Some(200),
            retrieved_ms: 0,
        }
    }

    fn file(location: &str) -> Source {
        Source {
            number: 0,
            kind: SourceKind::File,
            location: location.into(),
            bytes: 10,
            status: None,
            retrieved_ms: 0,
        }
    }

    fn cited(text: &str, known: &[SubtaskId]) -> Vec<Cited> {
        scan(text, known).into_iter().map(|(_, c)| c).collect()
    }

    #[test]
    fn source_numbers_read_in_every_form() {
        use Cited::Source as S;
        assert_eq!(cited("Growth was 4% [1].", &[]), vec![S(1)]);
        assert_eq!(cited("a [1, 3] b", &[]), vec![S(1), S(3)]);
        assert_eq!(cited("a [1][3]", &[]), vec![S(1), S(3)]);
        assert_eq!(cited("a [1-3]", &[]), vec![S(1), S(2), S(3)]);
        assert_eq!(cited("a [2–3]", &[]), vec![S(2), S(3)]);
        assert_eq!(
            cited("a [source 4] [Sources: 5; 6]", &[]),
            vec![S(4), S(5), S(6)]
        );
        assert_eq!(cited("a [^7] and [Source [8]]", &[]), vec![S(7), S(8)]);
        assert_eq!(cited("growth[2] is high", &[]), vec![S(2)]);
    }

    #[test]
    fn subtasks_read_explicitly_and_bare_when_known() {
        let known = ids(&["market-size", "Risks", "2"]);
        assert_eq!(
            cited(
                "x [subtask: market-size] [subtask risks] [§2] [subtasks: a, b] [market-size]",
                &known
            ),
            vec![
                Cited::Subtask("market-size".into()),
                Cited::Subtask("Risks".into()),
                Cited::Subtask("2".into()),
                Cited::Subtask("a".into()),
                Cited::Subtask("b".into()),
                Cited::Subtask("market-size".into()),
            ]
        );
        // A digit id needs the explicit form: `[2]` is source 2.
        assert_eq!(cited("y [2]", &known), vec![Cited::Source(2)]);
        // Mixed in one bracket, a word applies until the next one.
        assert_eq!(
            cited("z [§risks; source 2, 4]", &known),
            vec![
                Cited::Subtask("Risks".into()),
                Cited::Source(2),
                Cited::Source(4)
            ]
        );
    }

    #[test]
    fn brackets_that_are_not_citations_are_left_alone() {
        let known = ids(&["s1"]);
        for text in [
            "- [ ] todo and - [x] done",
            "[note] see [1, see above]",
            "[Source: Wikipedia] and [file not found] and [subtask was slow]",
            "`[3]` in code, ``a [4] b`` too",
            "items[0] and self.values[2] and f(x)[1] and a_b[3]",
            "years [1990-2020], [2019] and escaped \\[5]",
            "link [the report](#section)",
        ] {
            assert_eq!(cited(text, &known), vec![], "{text}");
        }
    }

    #[test]
    fn nothing_in_a_code_fence_is_a_citation() {
        let text = "Intro [1].\n\n```rust\nlet a = v[2]; // https://x.example/a\n```\n\n~~~~\n[3]\n~~~~\nEnd [4].";
        assert_eq!(cited(text, &[]), vec![Cited::Source(1), Cited::Source(4)]);
    }

    #[test]
    fn urls_are_found_bare_in_links_and_in_angle_brackets() {
        let text = "See https://a.example/x. Also [report](https://b.example/y?q=1) and \
                    <http://c.example/z> (https://d.example/w), https://e.example/(v)";
        assert_eq!(
            cited(text, &[]),
            vec![
                Cited::Url("https://a.example/x".into()),
                Cited::Url("https://b.example/y?q=1".into()),
                Cited::Url("http://c.example/z".into()),
                Cited::Url("https://d.example/w".into()),
                Cited::Url("https://e.example/(v)".into()),
            ]
        );
    }

    #[test]
    fn urls_compare_without_case_port_fragment_or_trailing_slash() {
        assert_eq!(
            normalise_url("HTTPS://Example.COM:443/Path/#top"),
            "https://example.com/Path"
        );
        assert_eq!(
            normalise_url("http://example.com/"),
            normalise_url("http://EXAMPLE.com")
        );
        assert_eq!(
            normalise_url("http://h:8080/a/?x=1#f"),
            "http://h:8080/a?x=1"
        );
        assert_ne!(
            normalise_url("http://h/a?x=1"),
            normalise_url("http://h/a?x=2")
        );
    }

    #[test]
    fn a_citation_to_a_url_never_fetched_is_flagged() {
        let sources = [url(1, "http://127.0.0.1:5000/market")];
        let report = "The market grew [1] (http://127.0.0.1:5000/Market is not it).\n\
                      Also HTTP://127.0.0.1:5000/market/#intro and https://elsewhere.example/x.";
        let flagged = unverified(report, &sources, &[]);
        assert_eq!(
            flagged,
            vec![
                Unverified {
                    cited: "http://127.0.0.1:5000/Market".into(),
                    line: 1,
                    why: "not retrieved in this run".into(),
                },
                Unverified {
                    cited: "https://elsewhere.example/x".into(),
                    line: 2,
                    why: "not retrieved in this run".into(),
                },
            ]
        );
    }

    #[test]
    fn missing_numbers_and_subtasks_are_flagged_once_per_line() {
        let sources = [url(1, "http://h/a"), url(2, "http://h/b")];
        let known = ids(&["size"]);
        let report = "A [1][9] [9].\nB [subtask: size] [subtask: ghost] [§size].\nC [0]";
        let flagged: Vec<(String, usize)> = unverified(report, &sources, &known)
            .into_iter()
            .map(|u| (u.cited, u.line))
            .collect();
        assert_eq!(
            flagged,
            vec![
                ("[9]".to_owned(), 1),
                ("subtask: ghost".to_owned(), 2),
                ("[0]".to_owned(), 3)
            ]
        );
    }

    #[test]
    fn a_redirect_passed_under_both_urls_verifies_either() {
        let sources = [url(1, "http://h/old"), url(1, "http://h/new")];
        assert!(unverified("http://h/old and http://h/new [1]", &sources, &[]).is_empty());
    }

    #[test]
    fn files_count_only_in_the_explicit_form_and_context_files_are_retrieved() {
        let sources = [file("/home/p/proj/src/engine/run.rs"), file("README.md")];
        let review = "The loop in src/x.rs:12 reads `src/y.rs` twice; see\n\
                      [file: src/engine/run.rs:40-52] and [file: ./README.md#L3].\n\
                      ```\nsrc/z.rs:1: error\n```\n";
        assert!(unverified(review, &sources, &[]).is_empty());
        let flagged = unverified("[file: src/missing.rs:3]", &sources, &[]);
        assert_eq!(flagged.len(), 1);
        assert_eq!(flagged[0].cited, "file: src/missing.rs:3");
    }

    #[test]
    fn a_plain_report_with_no_citations_flags_nothing() {
        let report = "# Title\n\nSome prose with a [link](#x), a list:\n\n- [ ] one\n- two [a]\n\n\
                      | a | b |\n|---|---|\n| [x] | 1 |\n";
        assert!(unverified(report, &[], &[]).is_empty());
    }

    #[test]
    fn paragraphs_split_prose_items_headings_rows_and_code() {
        let known = ids(&["size", "risks"]);
        let report = "# Market [subtask: size]\n\
                      \n\
                      First paragraph [1]\n\
                      continues here [2] [§risks].\n\
                      \n\
                      - item one [3]\n\
                        more of item one [1]\n\
                      - item two [size]\n\
                      \n\
                      ```\n\
                      [4] in code\n\
                      ```\n\
                      | row [5] |\n\
                      |---|\n\
                      | row [6] [subtask: ghost] |\n\
                      \n\
                      ---\n\
                      Last.";
        let split = paragraphs(report, &known);
        let got: Vec<(Range<usize>, Vec<&str>, Vec<u32>)> = split
            .iter()
            .map(|p| {
                (
                    p.lines.clone(),
                    p.subtasks.iter().map(SubtaskId::as_str).collect(),
                    p.sources.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0..1, vec!["size"], vec![]),
                (2..4, vec!["risks"], vec![1, 2]),
                (5..7, vec![], vec![3, 1]),
                (7..8, vec!["size"], vec![]),
                (9..12, vec![], vec![]),
                (12..14, vec![], vec![5]),
                (14..15, vec![], vec![6]),
                (17..18, vec![], vec![]),
            ]
        );
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines[17], "Last.");
    }

    #[test]
    fn an_unclosed_fence_runs_to_the_end() {
        let p = paragraphs("a [1]\n```\n[2]\n", &[]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].lines, 1..3);
        assert!(p[1].sources.is_empty());
        assert!(paragraphs("", &[]).is_empty());
    }

    #[test]
    fn sources_cited_lists_each_number_once() {
        assert_eq!(sources_cited("a [2] b [1, 2] `[3]`"), vec![2, 1]);
    }
}
