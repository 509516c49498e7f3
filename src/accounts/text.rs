//! Unicode rules for what customers type: emails are identifiers (no invisible characters,
//! so no look-alike accounts), names are free text (NFC, no control characters).
//!
//! Emails follow RFC 6531 §3.1 (NFC) and the PRECIS IdentifierClass of RFC 8264 §4.2, which
//! disallows controls, format characters (zero-width joiners and spaces, bidi controls, the
//! BOM), separators, private-use and unassigned code points and default-ignorable ones.
//! Names follow the FreeformClass of §4.3: any letter, mark or symbol, but no control
//! characters (C0 and C1, so no ANSI escape sequences) and no bidi embeddings, overrides or
//! isolates, which reorder what an operator sees around the name.

use unicode_normalization::UnicodeNormalization;

use crate::accounts::AccountError;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// NFC, the form RFC 6531 and RFC 8264 compare in.
pub fn nfc(text: &str) -> String {
    text.nfc().collect()
}

/// RFC 8264's IdentifierClass (§4.2): letters and digits, ASCII printables, and nothing with a
/// compatibility decomposition (fullwidth `ｐ`, mathematical `𝐩`, ligatures, Roman numerals),
/// no symbols, non-ASCII punctuation or unassigned code points. Its tables are the RFC's
/// (Unicode 6.3): characters assigned later are refused, as the RFC says until IANA updates.
pub fn precis_identifier(field: &'static str, text: &str) -> Result<(), AccountError> {
    use precis_core::{Error, IdentifierClass, StringClass};
    match IdentifierClass::default().allows(text) {
        Ok(()) => Ok(()),
        Err(err) => {
            let found = match err {
                Error::BadCodepoint(info) => format!(" (found U+{:04X})", info.cp),
                _ => String::new(),
            };
            Err(AccountError::validation(
                "invalid_characters",
                field,
                format!(
                    "{field} must not contain compatibility characters, symbols or other \
                     characters the PRECIS IdentifierClass disallows{found}"
                ),
            ))
        }
    }
}

/// The Unicode TS #39 skeleton: what `text` looks like, so that `pаypal` with a Cyrillic `а`
/// and `paypal` (or `rn` and `m`, `l` and `1`) have the same one.
pub fn skeleton(text: &str) -> String {
    unicode_security::skeleton(text).collect()
}

/// A character that renders as nothing, reorders text or is not a character yet: never part
/// of an email address.
pub fn invisible_in_identifier(c: char) -> bool {
    use GeneralCategory::*;
    matches!(
        c.general_category(),
        Control
            | Format
            | SpaceSeparator
            | LineSeparator
            | ParagraphSeparator
            | Surrogate
            | PrivateUse
            | Unassigned
    ) || default_ignorable_letter_or_mark(c)
}

/// Default_Ignorable_Code_Point characters that are letters or marks, so not caught by the
/// categories above: Hangul fillers, the combining grapheme joiner, Khmer inherent vowels,
/// Mongolian and other variation selectors.
fn default_ignorable_letter_or_mark(c: char) -> bool {
    matches!(
        c,
        '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FFA0}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// A character a name may not carry: controls (tab, newline, ESC and the C1 range), line and
/// paragraph separators, bidi embeddings, overrides and isolates. Joiners and bidi marks stay:
/// Persian, Indic and emoji text needs them.
pub fn refused_in_name(c: char) -> bool {
    use GeneralCategory::*;
    matches!(
        c.general_category(),
        Control | LineSeparator | ParagraphSeparator | Surrogate
    ) || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        || crate::render::untransportable(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_bidi_characters_are_not_identifier_characters() {
        for c in [
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}', '\u{202E}',
            '\u{2067}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{3164}', '\u{FE0F}', '\u{1B}',
            '\u{85}', '\u{A0}', '\u{2028}', '\u{E000}',
        ] {
            assert!(invisible_in_identifier(c), "{:04X}", c as u32);
        }
        for c in ['a', 'Z', '9', '.', '+', '-', 'é', 'ß', 'Ж', '日'] {
            assert!(!invisible_in_identifier(c), "{c}");
        }
    }

    #[test]
    fn names_refuse_controls_and_bidi_overrides_but_keep_joiners() {
        for c in [
            '\t', '\n', '\r', '\u{1B}', '\u{7F}', '\u{9B}', '\u{202E}', '\u{2066}',
        ] {
            assert!(refused_in_name(c), "{:04X}", c as u32);
        }
        for c in ['\u{200D}', '\u{200C}', '\u{200F}', 'ü', '🚀', '"', '{'] {
            assert!(!refused_in_name(c), "{:04X}", c as u32);
        }
        assert_eq!(nfc("Zoe\u{0308}"), "Zoë");
    }
}
