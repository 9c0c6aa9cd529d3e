//! The person's own material: the files named with `@path` in a query or with `--context`,
//! read into plain data (`protocol::Attachments`) before a run starts.
//!
//! It owns finding references in a query ([`references`]), walking a folder with its
//! `.gitignore` respected (the `ignore` crate), leaving out binary files with a reason, and the
//! per-run size limit (`[context] max_bytes`), which is an error, never a silent cut. It reads
//! files and nothing else: it must not start a run, print, or know about prompts; the engine
//! quotes what it returns and never opens a file itself.
//!
//! References, decided here once for every front end:
//! - `@` starts one at the start of the query or after a space or one of `( [ { , ;`, so an
//!   e-mail address (`ana@example.org`) or `\@name` is left alone;
//! - `@"my file.md"` names a path with spaces;
//! - otherwise the path runs to the next space; a trailing `.`, `,`, `;`, `:`, `!`, `?`, `)`,
//!   `]`, `}` or quote is taken as the sentence's, unless the path with it exists;
//! - `~/` is the home folder; a relative path is relative to the current folder.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::protocol::{AttachedFile, Attachments, SkippedFile};

/// A file with a NUL byte in its first this many bytes is taken for binary (as git does).
const SNIFF_BYTES: usize = 8000;

/// Characters that end a sentence rather than a path, when the path with them does not exist.
const TRAILING: &[char] = &['.', ',', ';', ':', '!', '?', ')', ']', '}', '"', '\''];

/// Why the attached files could not be read. Each message names the path and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("{origin}{path}: no such file or folder{hint}")]
    Missing {
        origin: Origin,
        path: String,
        /// Where a relative path was looked for.
        hint: String,
    },
    #[error("{origin}{path}: cannot be read: {reason}")]
    Unreadable {
        origin: Origin,
        path: String,
        reason: String,
    },
    #[error("`@\"` at character {at} of the query has no closing `\"`")]
    UnclosedQuote { at: usize },
    #[error(
        "the attached files have {} bytes, {} over the limit of {} bytes per run \
         (`[context] max_bytes` in the config file): {}. Attach fewer files, or raise the limit",
        thousands(*total),
        thousands(total.saturating_sub(*max)),
        thousands(*max),
        largest(files)
    )]
    TooLarge {
        total: u64,
        max: u64,
        /// Every file counted, largest first.
        files: Vec<(String, u64)>,
    },
}

/// Where a path was named, for messages: `@notes.md` or `--context notes.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Query,
    Flag,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Query => "@",
            Self::Flag => "--context ",
        })
    }
}

/// One `@path` of a query: the path as written (quotes removed), and its place in the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub path: String,
    /// Byte range of the whole token, `@` and quotes included.
    pub span: std::ops::Range<usize>,
    /// Written as `@"…"`: taken exactly, no trailing punctuation is dropped.
    pub quoted: bool,
}

/// The `@path` references of a query, in order. Pure: nothing is looked up on disk.
pub fn references(query: &str) -> Result<Vec<Reference>, ContextError> {
    let mut found = Vec::new();
    let mut previous: Option<char> = None;
    let mut chars = query.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let starts = c == '@' && previous.is_none_or(|p| p.is_whitespace() || "([{,;".contains(p));
        previous = Some(c);
        if !starts {
            continue;
        }
        let rest = &query[at + 1..];
        if let Some(quoted) = rest.strip_prefix('"') {
            let Some(end) = quoted.find('"') else {
                return Err(ContextError::UnclosedQuote {
                    at: query[..at].chars().count() + 1,
                });
            };
            let path = &quoted[..end];
            let span = at..at + 2 + end + 1;
            if !path.trim().is_empty() {
                found.push(Reference {
                    path: path.to_owned(),
                    span: span.clone(),
                    quoted: true,
                });
            }
            while chars.peek().is_some_and(|(i, _)| *i < span.end) {
                chars.next();
            }
            previous = Some('"');
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..end];
        // `@` alone, `@@…` and a bare `@.` are prose, not paths.
        if token.trim_end_matches(TRAILING).is_empty() || token.starts_with('@') {
            continue;
        }
        found.push(Reference {
            path: token.to_owned(),
            span: at..at + 1 + end,
            quoted: false,
        });
        while chars.peek().is_some_and(|(i, _)| *i < at + 1 + end) {
            previous = chars.next().map(|(_, c)| c);
        }
    }
    Ok(found)
}

/// Read what a query references and what `--context` names, in that order, into the run's
/// attachments: files as they are, folders as their text files (`.gitignore`, `.ignore` and
/// hidden files respected), each file once. Binary or non-UTF-8 files are skipped with a
/// reason. More than `max_bytes` of text in all is an error that lists the files.
pub fn gather(query: &str, extra: &[PathBuf], max_bytes: u64) -> Result<Attachments, ContextError> {
    let mut named: Vec<(Origin, String, PathBuf)> = Vec::new();
    for reference in references(query)? {
        let (shown, path) = resolve_reference(&reference)?;
        named.push((Origin::Query, shown, path));
    }
    for path in extra {
        let shown = path.to_string_lossy().into_owned();
        let real = expand_home(&shown);
        if std::fs::metadata(&real).is_err() {
            return Err(missing(Origin::Flag, &shown, &real));
        }
        named.push((Origin::Flag, shown, real));
    }
    let mut reader = Reader {
        seen: HashSet::new(),
        max_bytes,
        out: Attachments::default(),
        over: Vec::new(),
    };
    for (origin, shown, path) in named {
        reader.add(origin, &shown, &path)?;
        // Named on purpose, so readable by the run's file tools, ignored files and all.
        if let Ok(root) = std::fs::canonicalize(&path) {
            let root = root.to_string_lossy().into_owned();
            if !reader.out.roots.contains(&root) {
                reader.out.roots.push(root);
            }
        }
    }
    let total: u64 = reader.out.bytes() + reader.over.iter().map(|(_, b)| b).sum::<u64>();
    if total > max_bytes {
        let mut files: Vec<(String, u64)> = reader
            .out
            .listed()
            .into_iter()
            .map(|f| (f.path, f.bytes))
            .collect();
        files.extend(reader.over);
        files.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        return Err(ContextError::TooLarge {
            total,
            max: max_bytes,
            files,
        });
    }
    Ok(reader.out)
}

/// The path a reference names, and how it is shown: as written, or without the trailing
/// punctuation that belongs to the sentence when only that path exists.
fn resolve_reference(reference: &Reference) -> Result<(String, PathBuf), ContextError> {
    let written = reference.path.as_str();
    let path = expand_home(written);
    if reference.quoted || path.exists() {
        if !path.exists() {
            return Err(missing(Origin::Query, written, &path));
        }
        return Ok((written.to_owned(), path));
    }
    let trimmed = written.trim_end_matches(TRAILING);
    let path = expand_home(trimmed);
    if path.exists() {
        Ok((trimmed.to_owned(), path))
    } else {
        Err(missing(Origin::Query, trimmed, &path))
    }
}

fn missing(origin: Origin, shown: &str, path: &Path) -> ContextError {
    let hint = if path.is_relative() {
        std::env::current_dir()
            .map(|dir| format!(" (in {})", dir.display()))
            .unwrap_or_default()
    } else {
        String::new()
    };
    ContextError::Missing {
        origin,
        path: shown.to_owned(),
        hint,
    }
}

/// `~/x` in the home folder; anything else as it is.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

struct Reader {
    /// Files already taken (canonical paths), so a file named twice is attached once.
    seen: HashSet<PathBuf>,
    max_bytes: u64,
    out: Attachments,
    /// Text files too large to be worth reading whole: their sizes, for the limit's message.
    over: Vec<(String, u64)>,
}

impl Reader {
    fn add(&mut self, origin: Origin, shown: &str, path: &Path) -> Result<(), ContextError> {
        let meta = std::fs::metadata(path).map_err(|e| ContextError::Unreadable {
            origin,
            path: shown.to_owned(),
            reason: e.to_string(),
        })?;
        if !meta.is_dir() {
            // A file named on purpose is attached even where a `.gitignore` would skip it.
            return self.file(origin, shown, path);
        }
        let mut walk = ignore::WalkBuilder::new(path);
        // `.gitignore` counts outside a git repository too: a folder copied out of one, or a
        // project not under git, means the same by it.
        walk.require_git(false)
            .follow_links(false)
            .sort_by_file_name(|a, b| a.cmp(b));
        for entry in walk.build() {
            match entry {
                Ok(entry) => {
                    if entry.file_type().is_some_and(|t| t.is_file()) {
                        let shown = shown_path(shown, path, entry.path());
                        self.file(origin, &shown, entry.path())?;
                    }
                }
                Err(e) => self.out.skipped.push(SkippedFile {
                    path: shown.to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        Ok(())
    }

    fn file(&mut self, origin: Origin, shown: &str, path: &Path) -> Result<(), ContextError> {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if !self.seen.insert(key) {
            return Ok(());
        }
        let unreadable = |e: std::io::Error| ContextError::Unreadable {
            origin,
            path: shown.to_owned(),
            reason: e.to_string(),
        };
        let mut file = std::fs::File::open(path).map_err(unreadable)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // A file larger than the whole budget is only sniffed: it fails the limit anyway, and
        // reading gigabytes to say so would be slow.
        let whole = size <= self.max_bytes;
        let mut bytes = Vec::new();
        let read = if whole {
            file.read_to_end(&mut bytes)
        } else {
            (&mut file).take(SNIFF_BYTES as u64).read_to_end(&mut bytes)
        };
        read.map_err(unreadable)?;
        if bytes[..bytes.len().min(SNIFF_BYTES)].contains(&0) {
            self.skip(shown, "binary");
            return Ok(());
        }
        if !whole {
            self.over.push((shown.to_owned(), size));
            return Ok(());
        }
        match String::from_utf8(bytes) {
            Ok(mut text) => {
                if text.starts_with('\u{feff}') {
                    text.remove(0);
                }
                self.out.files.push(AttachedFile {
                    path: shown.to_owned(),
                    text,
                });
            }
            Err(_) => self.skip(shown, "not UTF-8 text"),
        }
        Ok(())
    }

    fn skip(&mut self, shown: &str, reason: &str) {
        self.out.skipped.push(SkippedFile {
            path: shown.to_owned(),
            reason: reason.to_owned(),
        });
    }
}

/// A folder's file as people read it: under the folder's name as they wrote it, with `/`.
fn shown_path(folder_shown: &str, folder: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(folder).unwrap_or(file);
    let relative: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let base = folder_shown.trim_end_matches('/');
    if base.is_empty() || base == "." {
        relative.join("/")
    } else {
        format!("{base}/{}", relative.join("/"))
    }
}

/// `204800` → `204,800`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The largest files of a list for a message: the first ten, and how many more.
fn largest(files: &[(String, u64)]) -> String {
    let mut parts: Vec<String> = files
        .iter()
        .take(10)
        .map(|(path, bytes)| format!("{path} ({} bytes)", thousands(*bytes)))
        .collect();
    if files.len() > 10 {
        parts.push(format!("and {} more", files.len() - 10));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(query: &str) -> Vec<String> {
        references(query)
            .expect("parses")
            .into_iter()
            .map(|r| r.path)
            .collect()
    }

    #[test]
    fn references_start_after_a_space_or_at_the_start() {
        assert_eq!(paths("@a.md and @b/c.txt"), ["a.md", "b/c.txt"]);
        assert_eq!(paths("summarise (@notes.md)"), ["notes.md)"]);
        assert_eq!(
            paths("mail ana@example.org or \\@team"),
            Vec::<String>::new()
        );
        assert_eq!(paths("an @ alone, @@twice"), Vec::<String>::new());
    }

    #[test]
    fn quoted_references_keep_their_spaces() {
        let found = references(r#"read @"my notes.md", then @x"#).expect("parses");
        assert_eq!(found[0].path, "my notes.md");
        assert!(found[0].quoted);
        assert_eq!(
            &r#"read @"my notes.md", then @x"#[found[0].span.clone()],
            r#"@"my notes.md""#
        );
        assert_eq!(found[1].path, "x");
    }

    #[test]
    fn an_unclosed_quote_is_an_error_with_its_place() {
        assert_eq!(
            references(r#"read @"my notes"#),
            Err(ContextError::UnclosedQuote { at: 6 })
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(204_800), "204,800");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn trailing_punctuation_belongs_to_the_sentence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("notes.md");
        std::fs::write(&file, "hello").expect("write");
        let query = format!("see @{}.", file.display());
        let got = gather(&query, &[], 1000).expect("attached");
        assert_eq!(got.files.len(), 1);
        assert_eq!(got.files[0].text, "hello");
        assert_eq!(got.files[0].path, file.display().to_string());
    }

    #[test]
    fn a_file_named_twice_is_attached_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "a").expect("write");
        let query = format!("@{} @{}", file.display(), file.display());
        let got = gather(&query, std::slice::from_ref(&file), 1000).expect("attached");
        assert_eq!(got.files.len(), 1);
    }

    #[test]
    fn folders_skip_binary_and_non_utf8_files_and_respect_gitignore() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), "secret.txt\n").expect("write");
        std::fs::write(root.join("b.md"), "bee").expect("write");
        std::fs::write(root.join("a.md"), "ay").expect("write");
        std::fs::write(root.join("secret.txt"), "hidden").expect("write");
        std::fs::write(root.join("logo.png"), b"\x89PNG\0\0").expect("write");
        std::fs::write(root.join("latin1.txt"), b"caf\xe9").expect("write");
        let got = gather("", &[root.to_path_buf()], 1000).expect("attached");
        let base = root.display().to_string();
        let names: Vec<&str> = got.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, [format!("{base}/a.md"), format!("{base}/b.md")]);
        let skipped: Vec<(&str, &str)> = got
            .skipped
            .iter()
            .map(|s| (s.path.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (format!("{base}/latin1.txt").as_str(), "not UTF-8 text"),
                (format!("{base}/logo.png").as_str(), "binary"),
            ]
        );
    }

    #[test]
    fn over_the_limit_is_an_error_naming_the_files_and_the_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.log");
        let small = dir.path().join("small.md");
        std::fs::write(&big, "x".repeat(150)).expect("write");
        std::fs::write(&small, "y".repeat(60)).expect("write");
        let err = gather("", &[small.clone(), big.clone()], 200).expect_err("too large");
        let text = err.to_string();
        assert!(
            text.contains("210 bytes, 10 over the limit of 200"),
            "{text}"
        );
        assert!(text.contains("[context] max_bytes"), "{text}");
        let at_big = text
            .find("big.log (150 bytes)")
            .expect("names the big file");
        let at_small = text
            .find("small.md (60 bytes)")
            .expect("names the small file");
        assert!(at_big < at_small, "largest first: {text}");
    }

    #[test]
    fn a_file_larger_than_the_limit_is_not_read_whole_but_still_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("huge.txt");
        std::fs::write(&big, "z".repeat(50_000)).expect("write");
        let err = gather("", &[big], 100).expect_err("too large");
        assert!(
            matches!(err, ContextError::TooLarge { total: 50_000, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_missing_reference_names_the_path_as_written() {
        let err = gather("read @no/such/file.md, please", &[], 1000).expect_err("missing");
        let text = err.to_string();
        assert!(
            text.starts_with("@no/such/file.md: no such file or folder"),
            "{text}"
        );
    }
}
