//! Cleaning what clients say about themselves before the compositor draws or reports it.

/// Longest title or app id kept, in characters.
pub const MAX_TITLE_CHARS: usize = 160;

/// Makes a client-supplied title or app id safe to draw and to print: control characters
/// become spaces, format characters (bidi overrides and isolates, zero-width joiners, …) are
/// dropped so text cannot reorder itself or hide, runs of whitespace collapse, and the result
/// is capped at [`MAX_TITLE_CHARS`] with an ellipsis.
pub fn sanitize_title(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_TITLE_CHARS * 4));
    let mut count = 0;
    let mut pending_space = false;
    for c in raw.chars() {
        if bulkhead_vmm::terminal::is_format(c) {
            continue;
        }
        if c.is_control() || c.is_whitespace() {
            pending_space = count > 0;
            continue;
        }
        if pending_space {
            if count + 1 >= MAX_TITLE_CHARS {
                break;
            }
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        if count >= MAX_TITLE_CHARS {
            // Replace the last character by an ellipsis to show that something was cut.
            out.pop();
            out.push('…');
            return out;
        }
        out.push(c);
        count += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_removed() {
        assert_eq!(sanitize_title("a\u{0}b\nc\td"), "a b c d");
        assert_eq!(sanitize_title("\u{202E}gnp.exe"), "gnp.exe");
        assert_eq!(sanitize_title("x\u{2066}y\u{2069}z\u{200B}"), "xyz");
        assert_eq!(
            sanitize_title("  lots   of\u{1b}[31m space  "),
            "lots of [31m space"
        );
        assert_eq!(sanitize_title("[banking] Bank"), "[banking] Bank");
    }

    #[test]
    fn long_titles_are_capped() {
        let t = sanitize_title(&"A".repeat(100_000));
        assert_eq!(t.chars().count(), MAX_TITLE_CHARS);
        assert!(t.ends_with('…'));
        let t = sanitize_title(&"é ".repeat(50_000));
        assert!(t.chars().count() <= MAX_TITLE_CHARS);
        assert_eq!(
            sanitize_title(&"x".repeat(MAX_TITLE_CHARS)).chars().count(),
            MAX_TITLE_CHARS
        );
        assert!(!sanitize_title(&"x".repeat(MAX_TITLE_CHARS)).ends_with('…'));
    }

    #[test]
    fn only_controls_give_empty() {
        assert_eq!(sanitize_title("\u{1}\u{2}\u{202e}"), "");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn sanitised_titles_are_safe(raw in "\\PC{0,400}|[\\x00-\\x1f\u{202a}-\u{202e}\u{2066}-\u{2069}a ]{0,400}") {
            let t = sanitize_title(&raw);
            proptest::prop_assert!(t.chars().count() <= MAX_TITLE_CHARS);
            proptest::prop_assert!(!t.chars().any(|c| c.is_control() || bulkhead_vmm::terminal::is_format(c)));
            proptest::prop_assert!(!t.starts_with(' ') && !t.ends_with(' '));
        }
    }
}
