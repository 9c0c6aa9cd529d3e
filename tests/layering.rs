//! The layering of the crate, checked from its source: arrows run one way, from the front ends
//! (`tui`, `headless`) through `engine` to `protocol`, and `llm` (like the store to come)
//! depends on `protocol` only. This test reads every file under `src/`, finds the `crate::`
//! paths it uses (in `use` lines and inline, test code included) and the terminal crates it
//! names, and fails on any that its module's rule does not allow.
//!
//! It owns the rules table below and a small Rust lexer that skips comments, strings and char
//! literals, so a doc comment naming `crate::engine` is not an import. It does not follow
//! `super::` out of a module or macros that build paths; nothing in the crate does either.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Crates that draw on or read from a terminal.
const TERMINAL: &[&str] = &["ratatui", "crossterm", "ratatui_textarea", "tui_markdown"];
/// Terminal crates plus the async runtime and HTTP: for modules that are plain data.
const PLAIN_DATA: &[&str] = &[
    "ratatui",
    "crossterm",
    "ratatui_textarea",
    "tui_markdown",
    "tokio",
    "tokio_util",
    "reqwest",
];

enum Imports {
    /// The module may import only these modules of the crate (itself included).
    Only(&'static [&'static str]),
    /// The module may import any module of the crate but these.
    Not(&'static [&'static str]),
}

struct Rule {
    module: &'static str,
    imports: Imports,
    /// External crates the module must not name.
    no_crates: &'static [&'static str],
}

/// One rule per top-level module. A module without a rule (a new front-end helper) is not
/// checked itself, but the `Only` rules keep every lower layer from importing it.
const RULES: &[Rule] = &[
    Rule {
        module: "protocol",
        imports: Imports::Only(&["protocol"]),
        no_crates: PLAIN_DATA,
    },
    Rule {
        module: "sanitize",
        imports: Imports::Only(&["sanitize"]),
        no_crates: PLAIN_DATA,
    },
    Rule {
        module: "llm",
        imports: Imports::Only(&["llm", "protocol", "sanitize"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "store",
        imports: Imports::Only(&["store", "protocol", "sanitize"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "defaults",
        imports: Imports::Only(&["defaults"]),
        no_crates: PLAIN_DATA,
    },
    Rule {
        module: "display",
        imports: Imports::Only(&["display", "protocol"]),
        no_crates: PLAIN_DATA,
    },
    Rule {
        module: "engine",
        imports: Imports::Only(&["engine", "protocol", "llm", "sanitize", "defaults"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "report",
        imports: Imports::Only(&[
            "report", "engine", "protocol", "sanitize", "display", "timeline",
        ]),
        no_crates: PLAIN_DATA,
    },
    Rule {
        module: "timeline",
        imports: Imports::Only(&["timeline", "display", "protocol"]),
        no_crates: PLAIN_DATA,
    },
    Rule {
        module: "config",
        imports: Imports::Not(&["headless", "tui", "report"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "cli",
        imports: Imports::Only(&["cli", "defaults"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "stats",
        imports: Imports::Not(&["headless", "tui", "report", "llm"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "history",
        imports: Imports::Not(&["headless", "tui"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "diff",
        imports: Imports::Only(&["diff", "report", "protocol"]),
        no_crates: PLAIN_DATA,
    },
    Rule {
        module: "export",
        imports: Imports::Not(&["headless", "tui", "engine", "llm"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "compare",
        imports: Imports::Not(&["headless", "tui", "engine", "llm"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "headless",
        imports: Imports::Not(&["tui"]),
        no_crates: &[],
    },
    Rule {
        module: "tui",
        imports: Imports::Not(&["headless"]),
        no_crates: &[],
    },
    Rule {
        module: "cache",
        imports: Imports::Not(&["headless", "tui", "report"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "mcp",
        imports: Imports::Only(&["mcp", "sanitize", "defaults", "protocol"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "doctor",
        imports: Imports::Not(&["tui", "report"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "context",
        imports: Imports::Only(&["context", "protocol"]),
        no_crates: PLAIN_DATA,
    },
    Rule {
        module: "presets",
        imports: Imports::Only(&["presets", "engine", "sanitize"]),
        no_crates: PLAIN_DATA,
    },
    Rule {
        module: "tools",
        imports: Imports::Only(&["tools", "sanitize", "defaults", "protocol"]),
        no_crates: TERMINAL,
    },
    Rule {
        module: "toolbox",
        imports: Imports::Only(&["toolbox", "llm", "tools", "mcp", "protocol", "display"]),
        no_crates: TERMINAL,
    },
];

#[test]
fn no_module_imports_upward() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut seen = BTreeSet::new();
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&root).expect("under src");
        let Some(module) = module_of(relative) else {
            continue;
        };
        seen.insert(module.clone());
        let source = std::fs::read_to_string(file).expect("a readable source file");
        for problem in check_source(&module, &source) {
            violations.push(format!("src/{}: {problem}", relative.display()));
        }
    }
    // A wrong path would make this test pass on nothing.
    for expected in ["protocol", "engine", "llm", "report", "sanitize", "tui"] {
        assert!(seen.contains(expected), "no files of `{expected}` found");
    }
    assert!(
        violations.is_empty(),
        "imports against the layering (see docs/ARCHITECTURE.md):\n{}",
        violations.join("\n")
    );
}

// ---- the checker --------------------------------------------------------------------------

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("a readable directory")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to; `None` for the crate roots.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_owned())
}

/// What in `source` (a file of `module`) breaks its rule.
fn check_source(module: &str, source: &str) -> Vec<String> {
    let Some(rule) = RULES.iter().find(|r| r.module == module) else {
        return Vec::new();
    };
    let code = code_only(source);
    let mut problems = Vec::new();
    for used in crate_modules(&code) {
        let allowed = match rule.imports {
            Imports::Only(list) => list.contains(&used.as_str()),
            Imports::Not(list) => !list.contains(&used.as_str()),
        };
        if !allowed {
            problems.push(format!("`{module}` imports `crate::{used}`"));
        }
    }
    for name in rule.no_crates {
        if names_crate(&code, name) {
            problems.push(format!("`{module}` uses the `{name}` crate"));
        }
    }
    problems
}

/// The source with comments removed and string and char literals emptied, so only code is
/// left where paths could be.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let at = |i: usize, s: &str| {
        s.chars()
            .enumerate()
            .all(|(k, c)| chars.get(i + k) == Some(&c))
    };
    while i < chars.len() {
        let c = chars[i];
        if at(i, "//") {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let mut depth = 0;
            while i < chars.len() {
                if at(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if at(i, "*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (at(i + 1, "\"") || at(i + 1, "#"))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
            && raw_string_start(&chars, i + 1).is_some()
        {
            let hashes = raw_string_start(&chars, i + 1).unwrap_or(0);
            i += 2 + hashes;
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            while i < chars.len() && !at(i, &close) {
                i += 1;
            }
            i += close.chars().count();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1b}') or a lifetime ('a): only literals are skipped.
            if chars.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The number of `#` of a raw string whose `r` is just before `from`, if one starts there.
fn raw_string_start(chars: &[char], from: usize) -> Option<usize> {
    let hashes = chars[from..].iter().take_while(|c| **c == '#').count();
    (chars.get(from + hashes) == Some(&'"')).then_some(hashes)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `word` starts at byte `i` of `code` as a whole identifier.
fn word_at(code: &str, i: usize, word: &str) -> bool {
    code[i..].starts_with(word)
        && !code[..i].chars().next_back().is_some_and(is_ident)
        && !code[i + word.len()..].chars().next().is_some_and(is_ident)
}

/// The top-level modules named by `crate::` paths, groups (`crate::{a, b::c}`) included.
fn crate_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate") {
        if !word_at(code, i, "crate") {
            continue;
        }
        let rest = code[i + "crate".len()..].trim_start();
        let Some(rest) = rest.strip_prefix("::") else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && is_ident(c) => {
                        found.insert(leading_ident(&group[k..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = leading_ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn leading_ident(text: &str) -> String {
    text.chars().take_while(|c| is_ident(*c)).collect()
}

/// Whether `code` names the external crate `name` (`name::…` not preceded by `::`).
fn names_crate(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(i, _)| {
        word_at(code, i, name)
            && code[i + name.len()..].trim_start().starts_with("::")
            && !code[..i].trim_end().ends_with("::")
    })
}

// ---- the checker itself -------------------------------------------------------------------

#[test]
fn an_upward_import_is_found_in_every_form() {
    let cases = [
        "use crate::engine::plan::Plan;",
        "use crate::{protocol::RunId, engine::run::Run};",
        "fn f() -> crate::engine::run::Run { todo!() }",
        "use crate :: engine;",
    ];
    for source in cases {
        assert_eq!(
            check_source("protocol", source),
            ["`protocol` imports `crate::engine`"],
            "{source}"
        );
    }
}

#[test]
fn comments_strings_and_chars_are_not_imports() {
    let source = r##"
        //! Unlike `crate::engine::plan`, this is plain data.
        /* crate::tui::view /* nested crate::tui */ */
        const A: &str = "crate::engine";
        const B: &str = r#"ratatui::Frame "quoted" crate::tui"#;
        const C: char = '"';
        fn f<'a>(x: &'a str) -> &'a str { let _ = b'"'; x }
        use crate::protocol::SubtaskId;
    "##;
    assert_eq!(check_source("protocol", source), Vec::<String>::new());
}

#[test]
fn terminal_crates_are_found_but_not_inside_longer_paths() {
    assert_eq!(
        check_source("engine", "use ratatui::Frame;"),
        ["`engine` uses the `ratatui` crate"]
    );
    assert_eq!(
        check_source(
            "engine",
            "let _ = crate::sanitize::x; my_ratatui::y(); a::crossterm::b();"
        ),
        Vec::<String>::new()
    );
}

#[test]
fn deny_rules_allow_everything_else() {
    assert_eq!(
        check_source(
            "headless",
            "use crate::{engine::executor::Engine, tui::app};"
        ),
        ["`headless` imports `crate::tui`"]
    );
    assert_eq!(
        check_source("no_rule_yet", "use crate::tui;"),
        Vec::<String>::new()
    );
}
