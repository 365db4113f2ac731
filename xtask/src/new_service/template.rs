//! The template language of `xtask/templates/new-service/`: `{{name}}` placeholders and line
//! directives that keep a block for some `--with` choices only.
//!
//! A directive is a line of its own starting with `//@` (Rust) or `#@` (TOML, shell, env files):
//! `@if postgres redis` keeps the lines up to the matching `@end` when any of the named parts is
//! chosen, `@unless live flags` when none is. Blocks nest.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use super::Part;

/// Renders `text` (the template at `path`, for messages) with `values` for its placeholders and
/// `chosen` deciding its blocks. An unknown placeholder, part or directive, or an unbalanced
/// block, is an error naming the template and line: a template bug, caught by xtask's tests.
pub(crate) fn render(
    path: &str,
    text: &str,
    values: &BTreeMap<&str, String>,
    chosen: &[Part],
) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    // One entry per open block: whether its lines are kept.
    let mut blocks: Vec<bool> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let at = || format!("{path}:{}", index + 1);
        let trimmed = line.trim_start();
        let directive = trimmed
            .strip_prefix("//@")
            .or_else(|| trimmed.strip_prefix("#@"));
        if let Some(directive) = directive {
            let mut words = directive.split_whitespace();
            let keyword = words.next().unwrap_or_default();
            let parts = words
                .map(|word| {
                    Part::parse(word)
                        .ok_or_else(|| anyhow::anyhow!("{}: unknown part `{word}`", at()))
                })
                .collect::<Result<Vec<_>>>()?;
            let any_chosen = parts.iter().any(|part| chosen.contains(part));
            match keyword {
                "if" | "unless" if parts.is_empty() => {
                    bail!("{}: `@{keyword}` names no part", at())
                }
                "if" => blocks.push(any_chosen),
                "unless" => blocks.push(!any_chosen),
                "end" if blocks.pop().is_some() => {}
                "end" => bail!("{}: `@end` without `@if` or `@unless`", at()),
                other => bail!("{}: unknown directive `@{other}`", at()),
            }
            continue;
        }
        if blocks.iter().all(|kept| *kept) {
            out.push_str(
                &substitute(line, values).map_err(|error| anyhow::anyhow!("{}: {error}", at()))?,
            );
            out.push('\n');
        }
    }
    if !blocks.is_empty() {
        bail!("{path}: {} block(s) not closed with `@end`", blocks.len());
    }
    Ok(out)
}

/// `line` with every `{{key}}` replaced by its value.
fn substitute(line: &str, values: &BTreeMap<&str, String>) -> Result<String> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("`{{{{` without `}}}}`");
        };
        let key = &after[..end];
        let Some(value) = values.get(key) else {
            bail!("unknown placeholder `{{{{{key}}}}}`");
        };
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<&'static str, String> {
        BTreeMap::from([("name", "orders".to_owned())])
    }

    #[test]
    fn blocks_are_kept_for_the_chosen_parts_only() -> Result<()> {
        let text = "a {{name}}\n//@if postgres redis\nb\n  #@unless live\nc\n  #@end\n//@end\nd\n";
        assert_eq!(
            render("t", text, &values(), &[Part::Redis])?,
            "a orders\nb\nc\nd\n"
        );
        assert_eq!(
            render("t", text, &values(), &[Part::Postgres, Part::Live])?,
            "a orders\nb\nd\n"
        );
        assert_eq!(render("t", text, &values(), &[])?, "a orders\nd\n");
        Ok(())
    }

    #[test]
    fn template_mistakes_name_the_file_and_line() {
        let cases = [
            ("{{nope}}\n", "t:1: unknown placeholder `{{nope}}`"),
            ("x\n//@if redis\n", "t: 1 block(s) not closed with `@end`"),
            ("//@end\n", "t:1: `@end` without `@if` or `@unless`"),
            ("//@if mongo\n//@end\n", "t:1: unknown part `mongo`"),
            ("//@when redis\n", "t:1: unknown directive `@when`"),
        ];
        for (text, expected) in cases {
            let error =
                render("t", text, &values(), &[]).map_or_else(|e| e.to_string(), |_| String::new());
            assert_eq!(error, expected, "{text:?}");
        }
    }
}
