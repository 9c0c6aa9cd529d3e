//! What changed in a report between two versions, as a line diff: the lines of the new version
//! in order, each marked as kept, added or removed (removed lines sit where they were). Pure
//! text in, marked lines out; drawing them (colour and the `+`/`-` signs) is the view's job.

use similar::{ChangeTag, TextDiff};

/// How a line of the diff relates to the two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Kept,
    Added,
    Removed,
}

impl Change {
    /// The sign the line is written with, so the change reads without colour.
    pub fn sign(self) -> &'static str {
        match self {
            Change::Kept => "  ",
            Change::Added => "+ ",
            Change::Removed => "- ",
        }
    }
}

/// One line of the diff, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    pub change: Change,
    pub text: String,
}

/// The line diff from `old` to `new`. A last line with or without its line ending is the
/// same line.
pub fn diff_lines(old: &str, new: &str) -> Vec<DiffLine> {
    let ended = |text: &str| {
        let mut text = text.replace("\r\n", "\n");
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text
    };
    let (old, new) = (ended(old), ended(new));
    TextDiff::from_lines(&old, &new)
        .iter_all_changes()
        .map(|change| DiffLine {
            change: match change.tag() {
                ChangeTag::Equal => Change::Kept,
                ChangeTag::Insert => Change::Added,
                ChangeTag::Delete => Change::Removed,
            },
            text: change.value().trim_end_matches(['\n', '\r']).to_owned(),
        })
        .collect()
}

/// How many lines were added and removed.
pub fn counts(lines: &[DiffLine]) -> (usize, usize) {
    let of = |c: Change| lines.iter().filter(|l| l.change == c).count();
    (of(Change::Added), of(Change::Removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_removed_then_added_in_place() {
        let lines = diff_lines("# Title\nold claim\nend\n", "# Title\nnew claim\nend");
        let marked: Vec<(Change, &str)> =
            lines.iter().map(|l| (l.change, l.text.as_str())).collect();
        assert_eq!(
            marked,
            [
                (Change::Kept, "# Title"),
                (Change::Removed, "old claim"),
                (Change::Added, "new claim"),
                (Change::Kept, "end"),
            ]
        );
        assert_eq!(counts(&lines), (1, 1));
    }

    #[test]
    fn the_same_text_has_no_change() {
        let lines = diff_lines("a\nb\n", "a\nb\n");
        assert_eq!(counts(&lines), (0, 0));
        assert_eq!(lines.len(), 2);
    }
}
