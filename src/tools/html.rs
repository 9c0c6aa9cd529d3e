//! HTML to readable text for `fetch_url`: `html2text` lays a page out (headings, lists, tables,
//! link targets) when the page is shaped like a document; a page nested deeper than any real
//! document is reduced by a plain linear tag stripper instead.
//!
//! Why the guard: `html2text`'s time grows much faster than linearly with nesting depth
//! (100 000 nested `<div>`s took minutes), and a conversion on a blocking thread cannot be
//! cancelled when the fetch times out, so a hostile page could pin a core. Pure functions.

/// Nesting deeper than this is not a document a person wrote; real pages stay in the tens.
pub(crate) const MAX_DEPTH: usize = 256;
/// Column width pages are laid out at: wide enough that prose is rarely wrapped mid-sentence.
const TEXT_WIDTH: usize = 120;

/// Elements that never have content.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr", "keygen",
];
/// Elements whose end tag may be left out (the parser closes them), so their starts are not
/// counted as nesting.
const AUTO_CLOSED: &[&str] = &[
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "thead", "tbody", "tfoot", "rt",
    "rp", "colgroup", "caption",
];
/// Elements that end a line in the plain fallback.
const BLOCK: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "section",
    "article",
    "header",
    "footer",
    "ul",
    "ol",
    "table",
    "blockquote",
    "pre",
    "hr",
    "dt",
    "dd",
    "main",
    "nav",
    "aside",
    "form",
];

/// The page as text, and whether the plain fallback was used.
pub(crate) fn to_text(html: &str) -> (String, bool) {
    if max_depth(html) > MAX_DEPTH {
        return (strip_tags(html), true);
    }
    match html2text::config::plain()
        .allow_width_overflow()
        .string_from_read(html.as_bytes(), TEXT_WIDTH)
    {
        Ok(text) => (text, false),
        Err(_) => (strip_tags(html), true),
    }
}

/// One tag of the source.
struct Tag {
    name: String,
    closing: bool,
    self_closing: bool,
    /// Byte offset just past the tag's `>`.
    end: usize,
}

/// The tag starting at `html[at]` (a `<`), if it is one; comments, doctypes and processing
/// instructions are skipped as `None` with their end.
fn tag_at(html: &str, at: usize) -> Result<Tag, usize> {
    let rest = &html[at..];
    if rest.starts_with("<!--") {
        return Err(rest.find("-->").map_or(html.len(), |i| at + i + 3));
    }
    if rest.starts_with("<!") || rest.starts_with("<?") {
        return Err(rest.find('>').map_or(html.len(), |i| at + i + 1));
    }
    let closing = rest.starts_with("</");
    let name_start = if closing { 2 } else { 1 };
    let name: String = rest[name_start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if name.is_empty() || !rest[name_start..].starts_with(|c: char| c.is_ascii_alphabetic()) {
        // A lone `<` in text.
        return Err(at + 1);
    }
    let end = rest.find('>').map_or(html.len(), |i| at + i + 1);
    let self_closing = html[..end].ends_with("/>");
    Ok(Tag {
        name,
        closing,
        self_closing,
        end,
    })
}

/// Where the raw-text element `name` (script, style) that started before `from` ends.
fn raw_text_end(html: &str, from: usize, name: &str) -> usize {
    let lower_close = format!("</{name}");
    let hay = &html[from..];
    // ASCII-case-insensitive search without lowercasing the whole page.
    let found = hay
        .char_indices()
        .filter(|(_, c)| *c == '<')
        .map(|(i, _)| i)
        .find(|&i| {
            hay.get(i..i + lower_close.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(&lower_close))
        });
    match found {
        Some(i) => hay[i..].find('>').map_or(html.len(), |j| from + i + j + 1),
        None => html.len(),
    }
}

/// An upper estimate of how deep the page's elements nest: start tags minus end tags, not
/// counting void and auto-closed elements or anything inside scripts and styles. Linear.
pub(crate) fn max_depth(html: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    while let Some(offset) = html[i..].find('<') {
        let at = i + offset;
        match tag_at(html, at) {
            Err(next) => i = next,
            Ok(tag) => {
                i = tag.end;
                let name = tag.name.as_str();
                if tag.closing {
                    if !VOID.contains(&name) && !AUTO_CLOSED.contains(&name) {
                        depth = depth.saturating_sub(1);
                    }
                } else if name == "script" || name == "style" {
                    if !tag.self_closing {
                        i = raw_text_end(html, i, name);
                    }
                } else if !tag.self_closing && !VOID.contains(&name) && !AUTO_CLOSED.contains(&name)
                {
                    depth += 1;
                    max = max.max(depth);
                }
            }
        }
    }
    max
}

/// The page's text without its markup, scripts and styles: block elements end lines, a few
/// common entities are decoded, runs of blank lines are folded. Linear, for pages
/// `html2text` should not be given.
pub(crate) fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut i = 0;
    while i < html.len() {
        let Some(offset) = html[i..].find('<') else {
            out.push_str(&html[i..]);
            break;
        };
        out.push_str(&html[i..i + offset]);
        let at = i + offset;
        match tag_at(html, at) {
            Err(next) => {
                if next == at + 1 {
                    out.push('<');
                }
                i = next;
            }
            Ok(tag) => {
                i = tag.end;
                let name = tag.name.as_str();
                if !tag.closing && (name == "script" || name == "style") && !tag.self_closing {
                    i = raw_text_end(html, i, name);
                } else if BLOCK.contains(&name) {
                    out.push('\n');
                }
            }
        }
    }
    let decoded = decode_entities(&out);
    let mut text = String::with_capacity(decoded.len());
    let mut blank_run = 0;
    for line in decoded.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 || text.is_empty() {
                continue;
            }
        } else {
            blank_run = 0;
        }
        text.push_str(&line);
        text.push('\n');
    }
    text
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    text.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_but_not_void_auto_closed_or_script_content() {
        assert_eq!(
            max_depth("<html><body><div><p>a<p>b</div></body></html>"),
            3
        );
        assert_eq!(max_depth("<div><br><img src=x><hr/></div>"), 1);
        assert_eq!(
            max_depth("<script>if (a<b) { '<div><div>' }</script><div></div>"),
            1
        );
        assert_eq!(max_depth("<!-- <div><div> --><div>x</div>"), 1);
        assert_eq!(max_depth("a < b and <3"), 0);
        assert_eq!(max_depth(&"<div>".repeat(1000)), 1000);
    }

    #[test]
    fn a_deeply_nested_page_is_stripped_quickly() {
        let html = format!(
            "<style>p {{}}</style>{}deep <b>text</b> &amp; more<script>x()</script>{}",
            "<div>".repeat(100_000),
            "</div>".repeat(100_000)
        );
        let started = std::time::Instant::now();
        let (text, plain) = to_text(&html);
        assert!(plain);
        assert_eq!(text.trim(), "deep text & more");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_document_is_laid_out_by_html2text() {
        let (text, plain) = to_text("<h1>Title</h1><ul><li>one</li><li>two</li></ul>");
        assert!(!plain);
        assert!(text.contains("# Title") && text.contains("* one"), "{text}");
    }
}
