//! Device metadata a CLI reports about itself (`cli_label`, `client_info`,
//! `dns_name`, `os_type`, `os_version`). It is untrusted text: cleaned when a
//! request arrives, so the approval page and the session list never show
//! bidi overrides, zero-width characters or other invisible tricks, and
//! shown apart from what Keyport itself knows.

use serde::{Deserialize, Serialize};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use keyport_proto::ClientInfo;

/// Longest device text kept, in characters; longer text is cut with "…".
pub const MAX_DEVICE_TEXT_CHARS: usize = 64;

/// Combining marks kept on one character (more only stack into smears that
/// can hide the text around them).
const MAX_MARKS_PER_CHAR: usize = 2;

/// What a device said about itself; shown on the approval page and kept on
/// the session.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceMetadata {
    /// The device registered by the password grant (a UUID Keyport chose
    /// or recognised; never text the device made up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_info: Option<ClientInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
}

impl DeviceMetadata {
    /// Every field through [`clean_device_text`]; fields left empty go.
    pub fn cleaned(self) -> Self {
        let clean = |v: Option<String>| v.as_deref().and_then(clean_device_text);
        let client_info = self.client_info.map(|info| ClientInfo {
            name: clean(info.name),
            version: clean(info.version),
        });
        Self {
            guid: self.guid,
            cli_label: clean(self.cli_label),
            client_info: client_info.filter(|i| i.name.is_some() || i.version.is_some()),
            dns_name: clean(self.dns_name),
            os_type: clean(self.os_type),
            os_version: clean(self.os_version),
        }
    }
}

/// Makes device-reported text safe to show: control and format characters
/// (bidi overrides and isolates, zero-width characters, byte-order marks),
/// surrogates, private-use and unassigned code points become U+FFFD, so a
/// tampered label looks tampered; line breaks and other spaces become one
/// plain space; combining marks are capped per character; the result is
/// trimmed and cut to [`MAX_DEVICE_TEXT_CHARS`]. `None` when nothing is left.
pub fn clean_device_text(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = 0;
    let mut marks = 0;
    let mut last_space = true;
    for c in text.chars() {
        let replaced = match c.general_category() {
            GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned => '\u{FFFD}',
            GeneralCategory::SpaceSeparator
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator => ' ',
            _ => c,
        };
        // Tabs and newlines are controls; treat them as the spaces they mean.
        let replaced = if c.is_whitespace() { ' ' } else { replaced };
        let is_mark = matches!(
            replaced.general_category(),
            GeneralCategory::NonspacingMark
                | GeneralCategory::SpacingMark
                | GeneralCategory::EnclosingMark
        );
        if is_mark {
            marks += 1;
            if marks > MAX_MARKS_PER_CHAR {
                continue;
            }
        } else {
            marks = 0;
        }
        if replaced == ' ' {
            if last_space {
                continue;
            }
            last_space = true;
        } else {
            last_space = false;
        }
        if chars == MAX_DEVICE_TEXT_CHARS {
            out.truncate(out.trim_end().len());
            out.push('…');
            return Some(out);
        }
        out.push(replaced);
        if !is_mark {
            chars += 1;
        }
    }
    let trimmed = out.trim_end();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_reordering_characters_become_visible() {
        let cases = [
            ("laptop", Some("laptop")),
            ("  work  laptop \n", Some("work laptop")),
            ("evil\u{202E}gpj.exe", Some("evil\u{FFFD}gpj.exe")),
            ("pay\u{200B}pal", Some("pay\u{FFFD}pal")),
            ("a\u{2066}b\u{2069}", Some("a\u{FFFD}b\u{FFFD}")),
            ("\u{FEFF}bom", Some("\u{FFFD}bom")),
            ("line\u{2028}sep", Some("line sep")),
            ("tab\there", Some("tab here")),
            ("bell\u{7}", Some("bell\u{FFFD}")),
            ("private\u{E000}", Some("private\u{FFFD}")),
            ("z\u{301}\u{301}\u{301}\u{301}", Some("z\u{301}\u{301}")),
            ("Łódź — ok", Some("Łódź — ok")),
            ("\u{200B}", Some("\u{FFFD}")),
            ("   ", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(clean_device_text(input).as_deref(), expected, "{input:?}");
        }
    }

    #[test]
    fn long_text_is_cut() {
        let long = "x".repeat(500);
        let cut = clean_device_text(&long).unwrap();
        assert_eq!(cut.chars().count(), MAX_DEVICE_TEXT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(
            clean_device_text(&"y".repeat(MAX_DEVICE_TEXT_CHARS)).unwrap(),
            "y".repeat(MAX_DEVICE_TEXT_CHARS)
        );
    }
}
