//! Text that crosses the public edge: the one rule for control characters.
//!
//! Every text field refuses NUL and the other control characters (C0, DEL,
//! C1) except newline and tab, which free text may hold. Postgres cannot
//! store NUL in text or jsonb and MongoDB refuses it in a pattern, so a NUL
//! that got through became a 500 on one backend and stored data on another;
//! refusing it at the edge makes every backend answer the same 422.

/// The first character of `s` a text field may not hold.
pub fn forbidden_char(s: &str) -> Option<char> {
    s.chars()
        .find(|&c| c.is_control() && c != '\n' && c != '\t')
}

/// The field error for text holding a forbidden character, if it does:
/// what a service's own validation answers, whoever called.
pub fn check(field: &str, s: &str) -> Result<(), crate::error::FieldError> {
    match forbidden_char(s) {
        Some(_) => Err(crate::error::FieldError::new(
            field,
            "must not hold control characters",
        )),
        None => Ok(()),
    }
}

/// Whether JSON text (a whole document, as sent) has an escaped character a
/// text field may not hold (`\u0000`, `\b`, `\u007f`…). Raw control bytes
/// inside strings are not valid JSON, so escapes are the only way in; this
/// scan lets the common case skip walking the parsed document.
pub fn json_may_hold_forbidden(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] != b'\\' {
            i += 1;
            continue;
        }
        match json.get(i + 1) {
            Some(b'b' | b'f' | b'r') => return true,
            Some(b'u') => {
                let code = json
                    .get(i + 2..i + 6)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, 16).ok());
                if code
                    .and_then(char::from_u32)
                    .is_some_and(|c| forbidden_char(c.encode_utf8(&mut [0; 4])).is_some())
                {
                    return true;
                }
                i += 6;
            }
            _ => i += 2,
        }
    }
    false
}

/// The path (`items[0].name`) of the first string in `value` that holds a
/// forbidden character, keys included.
pub fn forbidden_in_json(value: &serde_json::Value) -> Option<String> {
    fn walk(value: &serde_json::Value, path: &mut String) -> bool {
        match value {
            serde_json::Value::String(s) => forbidden_char(s).is_some(),
            serde_json::Value::Array(items) => items.iter().enumerate().any(|(i, v)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(v, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            serde_json::Value::Object(map) => map.iter().any(|(k, v)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                let found = forbidden_char(k).is_some() || walk(v, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    walk(value, &mut path).then_some(path)
}

#[cfg(test)]
mod tests {
    use crate::text::{forbidden_char, forbidden_in_json, json_may_hold_forbidden};

    #[test]
    fn newline_and_tab_pass_other_controls_do_not() {
        assert_eq!(forbidden_char("plain text, ünïcode ✓"), None);
        assert_eq!(forbidden_char("two\nlines\tand a tab"), None);
        for bad in [
            "a\0b",
            "\r",
            "bell\u{7}",
            "del\u{7f}",
            "c1\u{85}",
            "esc\u{1b}[",
        ] {
            assert!(forbidden_char(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn escapes_in_json_are_found_without_false_alarms() {
        for bad in [
            r#"{"a":"x\u0000y"}"#,
            r#"{"a":"\r"}"#,
            r#"{"a":"\u007F"}"#,
            r#"{"a":"\b"}"#,
        ] {
            assert!(json_may_hold_forbidden(bad.as_bytes()), "{bad}");
        }
        for fine in [
            r#"{"a":"x\ny\tz"}"#,
            r#"{"a":"\u000a\u0009"}"#,
            r#"{"a":"C:\\u0000 is text"}"#,
            r#"{"a":"\"quoted\" \/ \u00e9"}"#,
        ] {
            assert!(!json_may_hold_forbidden(fine.as_bytes()), "{fine}");
        }
    }

    #[test]
    fn the_path_of_the_offending_string_is_named() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"items":[{"q":"ok"},{"name":"a\u0000"}],"n":1}"#).unwrap();
        assert_eq!(forbidden_in_json(&v).as_deref(), Some("items[1].name"));
        let fine: serde_json::Value = serde_json::from_str(r#"{"a":["x\ny"]}"#).unwrap();
        assert_eq!(forbidden_in_json(&fine), None);
    }
}
