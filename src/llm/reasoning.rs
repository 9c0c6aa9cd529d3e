//! Telling a model's reasoning from its answer when both come in the same text: a `<think>…
//! </think>` block at the start of the content, as DeepSeek-R1, Qwen3 and other open models
//! write it when the server does not split it out itself. The tags may arrive cut across
//! stream chunks (`<thi` + `nk>`), so the splitter holds back only the few bytes that could
//! still be the start of a tag, and passes everything else on at once.
//!
//! It only splits text: it must not send anything, and it looks for a block only at the start
//! (after whitespace), so a `<think>` quoted later in an answer stays in the answer.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Nothing but whitespace yet: it may still open with `<think>`.
    #[default]
    Start,
    /// Inside the block.
    Thinking,
    /// Just after the block: the whitespace that separates it from the answer is dropped.
    AfterThinking,
    /// The answer: passed through.
    Answer,
}

/// What one piece of content turned out to be.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Split {
    pub reasoning: String,
    pub answer: String,
}

/// Splits streamed content into reasoning and answer. Feed every piece to `push`, then call
/// `finish` once the stream ended.
#[derive(Debug, Default)]
pub struct ThinkSplitter {
    state: State,
    /// Text not yet known to be reasoning or answer.
    pending: String,
}

impl ThinkSplitter {
    pub fn push(&mut self, piece: &str) -> Split {
        let mut out = Split::default();
        if self.state == State::Answer {
            out.answer.push_str(piece);
            return out;
        }
        self.pending.push_str(piece);
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.pending.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(OPEN) {
                        self.pending = rest.to_owned();
                        self.state = State::Thinking;
                    } else if OPEN.starts_with(trimmed) {
                        // Whitespace, or `<thi`: wait for more.
                        return out;
                    } else {
                        out.answer.push_str(&std::mem::take(&mut self.pending));
                        self.state = State::Answer;
                        return out;
                    }
                }
                State::Thinking => {
                    if let Some(at) = self.pending.find(CLOSE) {
                        out.reasoning.push_str(&self.pending[..at]);
                        self.pending = self.pending[at + CLOSE.len()..].to_owned();
                        self.state = State::AfterThinking;
                    } else {
                        let keep = tag_prefix_len(&self.pending, CLOSE);
                        let cut = self.pending.len() - keep;
                        out.reasoning.push_str(&self.pending[..cut]);
                        self.pending.drain(..cut);
                        return out;
                    }
                }
                State::AfterThinking => {
                    let trimmed = self.pending.trim_start();
                    if !trimmed.is_empty() {
                        out.answer.push_str(trimmed);
                        self.state = State::Answer;
                    }
                    self.pending.clear();
                    return out;
                }
                State::Answer => {
                    out.answer.push_str(&std::mem::take(&mut self.pending));
                    return out;
                }
            }
        }
    }

    /// What was held back: an unclosed block is all reasoning (a model cut off while
    /// thinking has given no answer), a lone `<thi` is answer.
    pub fn finish(&mut self) -> Split {
        let pending = std::mem::take(&mut self.pending);
        match self.state {
            State::Thinking => Split {
                reasoning: pending,
                answer: String::new(),
            },
            State::Start | State::Answer => Split {
                reasoning: String::new(),
                answer: pending,
            },
            State::AfterThinking => Split::default(),
        }
    }

    /// Split a whole answer at once.
    pub fn split_all(text: &str) -> Split {
        let mut splitter = Self::default();
        let mut split = splitter.push(text);
        let rest = splitter.finish();
        split.reasoning.push_str(&rest.reasoning);
        split.answer.push_str(&rest.answer);
        split
    }
}

/// The length of the longest end of `text` that is a start of `tag` (so may be completed by
/// the next piece). Tags are ASCII, so such an end always starts on a char boundary.
fn tag_prefix_len(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && text.ends_with(&tag[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_pieces(pieces: &[&str]) -> Split {
        let mut splitter = ThinkSplitter::default();
        let mut all = Split::default();
        for piece in pieces {
            let s = splitter.push(piece);
            all.reasoning.push_str(&s.reasoning);
            all.answer.push_str(&s.answer);
        }
        let s = splitter.finish();
        all.reasoning.push_str(&s.reasoning);
        all.answer.push_str(&s.answer);
        all
    }

    #[test]
    fn a_think_block_at_the_start_is_reasoning_whatever_the_chunking() {
        let text = "\n<think>Let me see: 2 < 3.</think>\n\nThe answer is 3.";
        let expected = Split {
            reasoning: "Let me see: 2 < 3.".into(),
            answer: "The answer is 3.".into(),
        };
        assert_eq!(ThinkSplitter::split_all(text), expected);
        // Every way of cutting it in two, and byte by byte.
        for cut in 0..=text.len() {
            assert_eq!(
                split_pieces(&[&text[..cut], &text[cut..]]),
                expected,
                "{cut}"
            );
        }
        let bytes: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(split_pieces(&pieces), expected);
    }

    #[test]
    fn text_without_a_leading_block_is_all_answer() {
        for text in [
            "Plain answer.",
            "Quoting <think>tags</think> later.",
            "<thi",
            "  <b>x</b>",
        ] {
            let split = ThinkSplitter::split_all(text);
            assert_eq!(split.answer, text);
            assert!(split.reasoning.is_empty());
        }
    }

    #[test]
    fn an_unclosed_or_answerless_block_leaves_no_answer() {
        assert_eq!(
            ThinkSplitter::split_all("<think>still going"),
            Split {
                reasoning: "still going".into(),
                answer: String::new()
            }
        );
        assert_eq!(
            split_pieces(&["<think>done</think>", "\n\n  "]),
            Split {
                reasoning: "done".into(),
                answer: String::new()
            }
        );
    }

    #[test]
    fn multibyte_text_before_a_cut_tag_is_safe() {
        let split = split_pieces(&["<think>é</", "think>ü"]);
        assert_eq!(split.reasoning, "é");
        assert_eq!(split.answer, "ü");
    }
}
