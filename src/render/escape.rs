//! How `{{ expr }}` reaches YAML: as a JSON scalar literal (a valid YAML flow scalar), further
//! escaped for the characters YAML parsers treat differently from JSON.
//!
//! JSON allows U+2028/U+2029 raw, but YAML 1.1 parsers (libyaml, go-yaml v2 in the API server)
//! read them and U+0085 as line breaks and fold them inside quoted scalars, and they reject DEL,
//! C1 controls and U+FFFE/U+FFFF outright. Escaping them as `\uXXXX` (valid in both JSON and YAML
//! double-quoted scalars) makes customer text round-trip exactly.
//!
//! Each printed literal is wrapped in the private-use marks of [`skeleton`](super::skeleton), so
//! the renderer knows where values are; the marks never reach a file, and values never hold them
//! raw (they are escaped like the characters above).

use std::borrow::Cow;
use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Error, ErrorKind, Output, State};

/// Opens a printed value in the raw template output.
pub(super) const VALUE_START: char = '\u{e000}';
/// Closes a printed value.
pub(super) const VALUE_END: char = '\u{e001}';

/// Characters only the renderer may write: the value marks and the skeleton cache's two probe
/// marks (U+E002, U+E003). Escaped in values, refused in templates.
pub(super) fn is_reserved(c: char) -> bool {
    ('\u{e000}'..='\u{e003}').contains(&c)
}

/// minijinja formatter: values marked safe (macro output, `|safe`) pass through; everything else is
/// printed as one quoted/escaped scalar. Maps and sequences are refused, so a template can never
/// splice a structure into a document by accident.
pub(super) fn yaml_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    if value.is_safe() || state.auto_escape() == AutoEscape::None {
        return minijinja::escape_formatter(out, state, value);
    }
    match value.kind() {
        ValueKind::String | ValueKind::Number | ValueKind::Bool | ValueKind::None => {}
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("only scalars may be printed into YAML, got {kind}"),
            ))
        }
    }
    let json = serde_json::to_string(value).map_err(|err| {
        Error::new(
            ErrorKind::BadSerialization,
            "value cannot be written as JSON",
        )
        .with_source(err)
    })?;
    out.write_char(VALUE_START)?;
    out.write_str(&yaml_safe(&json))?;
    out.write_char(VALUE_END).map_err(Error::from)
}

/// Characters that are valid raw in JSON strings but not read back verbatim by YAML parsers,
/// and the renderer's value marks.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
    ) || is_reserved(c)
}

/// Escapes [`needs_escape`] characters of a JSON literal; they can only occur inside its strings.
pub(super) fn yaml_safe(json: &str) -> Cow<'_, str> {
    // Every such character is DEL or encoded with bytes above it.
    if json.bytes().all(|b| b < 0x7f) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if needs_escape(c) {
            // All such characters are in the BMP: one \uXXXX, never a surrogate pair.
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> String {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn line_separators_and_controls_round_trip_through_yaml() {
        let text = "a\u{2028}b\u{2029}c\u{85}d\u{7f}e\u{9b}f\u{feff}g\n\t\"'\\\u{e000}\u{e003}";
        let literal = yaml_safe(&serde_json::to_string(text).unwrap()).into_owned();
        assert!(!literal.contains(['\u{2028}', '\u{85}', '\u{e000}', '\u{e003}']));
        assert_eq!(parse(&literal), text);
        // Still valid JSON, so the same literal is read identically by JSON parsers.
        assert_eq!(serde_json::from_str::<String>(&literal).unwrap(), text);
    }

    #[test]
    fn astral_characters_stay_raw() {
        let text = "emoji 🚀 and RTL \u{202e}שלום";
        let literal = yaml_safe(&serde_json::to_string(text).unwrap()).into_owned();
        assert!(literal.contains('🚀'));
        assert_eq!(parse(&literal), text);
    }

    #[test]
    fn formatter_refuses_structures() {
        let mut env = minijinja::Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Json);
        env.set_formatter(yaml_formatter);
        let out = env.render_str("k: {{ v }}", minijinja::context! { v => "x: y\n- z" });
        assert_eq!(out.unwrap(), "k: \u{e000}\"x: y\\n- z\"\u{e001}");
        let err = env.render_str("k: {{ v }}", minijinja::context! { v => vec!["a"] });
        assert!(err.unwrap_err().to_string().contains("only scalars"));
    }
}
