//! Validated input types: parsed once at the edge, trusted afterwards.

use rand::Rng;
use serde_json::{Map, Value};

use super::text;
use crate::accounts::AccountError;

/// A server-generated customer id: a letter then 11 of `[a-z0-9]` (about 57 bits of randomness).
/// It is a DNS-1123 label, so `customer-<id>` is a namespace and `<id>.<domain>` a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerId(String);

impl CustomerId {
    pub const LEN: usize = 12;

    pub fn generate() -> Self {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
        const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::thread_rng();
        let mut id = String::with_capacity(Self::LEN);
        id.push(LETTERS[rng.gen_range(0..LETTERS.len())] as char);
        for _ in 1..Self::LEN {
            id.push(ALNUM[rng.gen_range(0..ALNUM.len())] as char);
        }
        CustomerId(id)
    }

    /// Accepts an id from a path or token only if it has the generated shape.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = text.len() == Self::LEN
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        ok.then(|| CustomerId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address as given (trimmed, NFC), the form it is found by (lowercased too), and
/// its look: the TS #39 skeleton that look-alike addresses share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub display: String,
    pub normalized: String,
    pub skeleton: String,
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, AccountError> {
        let display = text::nfc(raw.trim());
        refuse(
            "email",
            &display,
            text::invisible_in_identifier,
            "invisible, control, space or bidirectional-control characters",
        )?;
        text::precis_identifier("email", &display)?;
        let invalid =
            |why: &str| AccountError::validation("invalid_email", "email", why.to_string());
        if display.len() > 254 {
            return Err(invalid("email must be at most 254 characters"));
        }
        let (local, domain) = display
            .split_once('@')
            .ok_or_else(|| invalid("email must look like name@example.com"))?;
        let domain_ok = domain.contains('.')
            && domain
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && !"@<>()[]\\,;:\"".contains(c));
        if !domain_ok || !local_ok {
            return Err(invalid("email must look like name@example.com"));
        }
        let normalized = text::nfc(&display.to_lowercase());
        Ok(Email {
            skeleton: text::skeleton(&normalized),
            normalized,
            display,
        })
    }
}

/// Reads request fields from a JSON object so that a missing or mistyped field names itself.
pub struct Fields(Map<String, Value>);

impl Fields {
    pub fn from_value(value: Value) -> Result<Self, AccountError> {
        match value {
            Value::Object(map) => Ok(Fields(map)),
            _ => Err(AccountError::MalformedJson("expected a JSON object".into())),
        }
    }

    /// A string field, `None` when absent or null.
    pub fn optional(&self, name: &'static str) -> Result<Option<String>, AccountError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                // Refused for every field (PostgreSQL cannot store it in text), with the code
                // of control characters everywhere else.
                if s.contains('\0') {
                    return Err(AccountError::validation(
                        "invalid_characters",
                        name,
                        format!("{name} must not contain control characters (found U+0000)"),
                    ));
                }
                Ok(Some(s.clone()))
            }
            Some(_) => Err(AccountError::validation(
                "invalid_type",
                name,
                format!("{name} must be a string"),
            )),
        }
    }

    /// A string field that must be present and not blank.
    pub fn required(&self, name: &'static str) -> Result<String, AccountError> {
        match self.optional(name)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(AccountError::validation(
                "missing_field",
                name,
                format!("{name} is required"),
            )),
        }
    }
}

/// A clear 400 naming the field when `text` has a character `refused` refuses.
fn refuse(
    field: &'static str,
    text: &str,
    refused: fn(char) -> bool,
    what: &str,
) -> Result<(), AccountError> {
    match text.chars().find(|&c| refused(c)) {
        Some(c) => Err(AccountError::validation(
            "invalid_characters",
            field,
            format!("{field} must not contain {what} (found U+{:04X})", c as u32),
        )),
        None => Ok(()),
    }
}

/// A free-text name (company, person): trimmed, NFC, bounded, without control characters or
/// bidi overrides. Its content reaches manifests only as a quoted YAML scalar, so quotes,
/// braces and the like need no refusing.
pub fn parse_name(
    field: &'static str,
    raw: &str,
    max_chars: usize,
) -> Result<String, AccountError> {
    let name = text::nfc(raw.trim());
    refuse(
        field,
        &name,
        text::refused_in_name,
        "control characters or bidirectional overrides",
    )?;
    if name.chars().count() > max_chars {
        return Err(AccountError::validation(
            "too_long",
            field,
            format!("{field} must be at most {max_chars} characters"),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_dns_labels() {
        for _ in 0..200 {
            let id = CustomerId::generate();
            let s = id.as_str();
            assert_eq!(s.len(), CustomerId::LEN);
            assert!(s.chars().next().unwrap().is_ascii_lowercase());
            assert!(s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
            assert_eq!(CustomerId::parse(s), Some(id.clone()));
        }
        assert_eq!(CustomerId::parse("Abc"), None);
        assert_eq!(CustomerId::parse("../../etc/pa"), None);
    }

    #[test]
    fn emails_are_trimmed_and_normalised() {
        let e = Email::parse("  Ann.Lee+x@Example.COM ").unwrap();
        assert_eq!(e.display, "Ann.Lee+x@Example.COM");
        assert_eq!(e.normalized, "ann.lee+x@example.com");
        for bad in [
            "", "plain", "a@b", "a b@c.io", "@c.io", "a@.io", "a@b..io", "a@@b.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn fields_name_what_is_wrong() {
        let f = Fields::from_value(serde_json::json!({"a": 1, "b": "  ", "c": "x"})).unwrap();
        let field_of = |e: AccountError| match e {
            AccountError::Validation { field, code, .. } => (field, code),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field_of(f.required("a").unwrap_err()),
            (Some("a"), "invalid_type")
        );
        assert_eq!(
            field_of(f.required("b").unwrap_err()),
            (Some("b"), "missing_field")
        );
        assert_eq!(
            field_of(f.required("z").unwrap_err()),
            (Some("z"), "missing_field")
        );
        assert_eq!(f.required("c").unwrap(), "x");
    }

    #[test]
    fn names_keep_hostile_text_but_not_control_characters() {
        let hostile = "Acme --- kind: Secret {{ x }} {% if %} \"'# & *a !!str ünï 🚀 👩\u{200d}💻";
        assert_eq!(parse_name("company_name", hostile, 200).unwrap(), hostile);
        assert_eq!(parse_name("full_name", " Zoe\u{308} ", 200).unwrap(), "Zoë");
        for bad in [
            "A\u{7f}B",
            "A\u{85}B",
            "A\u{9b}B",
            "A\u{fffe}",
            "Acme\n---\nkind: Secret",
            "A\tB",
            "\u{1b}[31mRed\u{1b}[0m",
            "Evil\u{202e}cod.exe",
        ] {
            let err = parse_name("company_name", bad, 200).unwrap_err();
            assert!(
                matches!(
                    err,
                    AccountError::Validation {
                        code: "invalid_characters",
                        ..
                    }
                ),
                "{bad:?}"
            );
        }
        assert!(Email::parse("a\u{85}b@c.io").is_err());
    }

    #[test]
    fn emails_refuse_invisible_characters_and_compare_in_nfc() {
        for bad in [
            "bo\u{200b}ss@example.com",
            "boss\u{200d}@example.com",
            "\u{feff}boss@example.com",
            "bo\u{202e}ss@example.com",
            "bo\u{2066}ss@example.com",
            "bo\u{200f}ss@example.com",
            "bo\u{ad}ss@example.com",
            "bo\u{3164}ss@example.com",
            "bo\u{1b}ss@example.com",
        ] {
            match Email::parse(bad) {
                Err(AccountError::Validation { code, field, .. }) => {
                    assert_eq!(
                        (code, field),
                        ("invalid_characters", Some("email")),
                        "{bad:?}"
                    )
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // Compatibility characters: PRECIS refuses them rather than mapping them.
        for bad in [
            "\u{ff50}aypal@example.com",
            "\u{1d429}aypal@example.com",
            "paypal@\u{ff45}xample.com",
            "pay\u{2160}@example.com",
        ] {
            assert!(
                matches!(
                    Email::parse(bad),
                    Err(AccountError::Validation {
                        code: "invalid_characters",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        let latin = Email::parse("PayPal@example.com").unwrap();
        let cyrillic = Email::parse("p\u{430}ypal@example.com").unwrap();
        assert_ne!(latin.normalized, cyrillic.normalized);
        assert_eq!(latin.skeleton, cyrillic.skeleton);
        let decomposed = Email::parse("Zoe\u{308}@example.com").unwrap();
        let composed = Email::parse("zoë@example.com").unwrap();
        assert_eq!(decomposed.normalized, composed.normalized);
        assert_eq!(decomposed.display, "Zoë@example.com");
    }
}
