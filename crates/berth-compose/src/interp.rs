//! Variable interpolation as the compose specification defines it:
//! `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}`
//! (unset), `${VAR:?message}` / `${VAR?message}` (refuse), `${VAR:+alt}` /
//! `${VAR+alt}` (replace when set), `$$` for a literal `$`, and defaults
//! that hold interpolations themselves (`${A:-${B:-x}}`), evaluated only
//! when used.

/// Deepest nesting of `${...}` inside defaults.
pub const NESTING_MAX: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpError {
    /// `${VAR:?message}` with VAR unset (or empty).
    Required {
        name: String,
        message: String,
    },
    Syntax(String),
}

impl std::fmt::Display for InterpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpError::Required { name, message } if message.is_empty() => {
                write!(f, "required variable {name} is not set")
            }
            InterpError::Required { name, message } => {
                write!(f, "required variable {name} is not set: {message}")
            }
            InterpError::Syntax(m) => f.write_str(m),
        }
    }
}

/// Interpolate `text`. `lookup` gives a variable's value (None: unset);
/// each variable used without a default while unset is pushed on
/// `unresolved` and replaced by an empty string, as compose does.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unresolved: &mut Vec<String>,
) -> Result<String, InterpError> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let out = expand(&chars, &mut i, lookup, unresolved, 0, false)?;
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn syntax(text: &[char], why: &str) -> InterpError {
    let s: String = text.iter().collect();
    InterpError::Syntax(format!(
        "invalid interpolation in {s:?}: {why} (write $$ for a literal $)"
    ))
}

/// Expand from `*i` to the end, or, `inner`, to the `}` that closes the
/// current `${...}` (left unconsumed).
fn expand(
    s: &[char],
    i: &mut usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    unresolved: &mut Vec<String>,
    depth: usize,
    inner: bool,
) -> Result<String, InterpError> {
    let mut out = String::new();
    while *i < s.len() {
        let c = s[*i];
        if inner && c == '}' {
            return Ok(out);
        }
        if c != '$' {
            out.push(c);
            *i += 1;
            continue;
        }
        match s.get(*i + 1) {
            Some('$') => {
                out.push('$');
                *i += 2;
            }
            Some('{') => {
                *i += 2;
                out.push_str(&braced(s, i, lookup, unresolved, depth)?);
            }
            Some(&c) if is_name_start(c) => {
                *i += 1;
                let start = *i;
                while *i < s.len() && is_name(s[*i]) {
                    *i += 1;
                }
                let name: String = s[start..*i].iter().collect();
                match lookup(&name) {
                    Some(v) => out.push_str(&v),
                    None => unresolved.push(name),
                }
            }
            _ => return Err(syntax(s, "a lone $")),
        }
    }
    if inner {
        return Err(syntax(s, "missing }"));
    }
    Ok(out)
}

/// After `${`: the name, an optional operator and its word, and the `}`.
fn braced(
    s: &[char],
    i: &mut usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    unresolved: &mut Vec<String>,
    depth: usize,
) -> Result<String, InterpError> {
    if depth >= NESTING_MAX {
        return Err(syntax(s, "interpolations nest too deep"));
    }
    let start = *i;
    while *i < s.len() && is_name(s[*i]) {
        *i += 1;
    }
    let name: String = s[start..*i].iter().collect();
    if name.is_empty() || !is_name_start(s[start]) {
        return Err(syntax(s, "expected a variable name after ${"));
    }
    let value = lookup(&name);
    let rest = |i: usize, n: usize| s.get(i..i + n).map(|c| c.iter().collect::<String>());
    let op = if rest(*i, 2)
        .as_deref()
        .is_some_and(|o| [":-", ":?", ":+"].contains(&o))
    {
        let o = rest(*i, 2).unwrap_or_default();
        *i += 2;
        o
    } else if matches!(s.get(*i), Some('-' | '?' | '+')) {
        let o = s[*i].to_string();
        *i += 1;
        o
    } else if s.get(*i) == Some(&'}') {
        *i += 1;
        return Ok(match value {
            Some(v) => v,
            None => {
                unresolved.push(name);
                String::new()
            }
        });
    } else {
        return Err(syntax(s, "unexpected character in ${...}"));
    };
    let set = value.is_some();
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    // The word is always parsed (so a syntax error anywhere is reported),
    // but its variables count as used only when the word is used.
    let mut scratch = Vec::new();
    let use_word = match op.as_str() {
        ":-" | ":?" => !set_nonempty,
        "-" | "?" => !set,
        ":+" => set_nonempty,
        _ => set, // "+"
    };
    let word = if use_word {
        expand(s, i, lookup, unresolved, depth + 1, true)?
    } else {
        expand(s, i, lookup, &mut scratch, depth + 1, true)?
    };
    // `expand` stopped at the closing brace.
    *i += 1;
    Ok(match op.as_str() {
        ":-" | "-" if use_word => word,
        ":?" | "?" if use_word => {
            return Err(InterpError::Required {
                name,
                message: word,
            });
        }
        ":+" | "+" => {
            if use_word {
                word
            } else {
                String::new()
            }
        }
        _ => value.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("v".into()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("8332".into()),
            _ => None,
        }
    }

    #[test]
    fn table() {
        // (input, output, unresolved)
        let cases: &[(&str, &str, &[&str])] = &[
            ("plain", "plain", &[]),
            ("$SET", "v", &[]),
            ("${SET}", "v", &[]),
            ("a${SET}b$SET.c", "avbv.c", &[]),
            ("$$SET", "$SET", &[]),
            ("$${SET}", "${SET}", &[]),
            ("cost: $$5", "cost: $5", &[]),
            ("${UNSET}", "", &["UNSET"]),
            ("$UNSET-x", "-x", &["UNSET"]),
            ("${UNSET:-d}", "d", &[]),
            ("${EMPTY:-d}", "d", &[]),
            ("${EMPTY-d}", "", &[]),
            ("${UNSET-d}", "d", &[]),
            ("${SET:-d}", "v", &[]),
            ("${UNSET:-}", "", &[]),
            ("${UNSET:-a b:c}", "a b:c", &[]),
            ("${UNSET:-${PORT}}", "8332", &[]),
            ("${UNSET:-${ALSO:-${PORT}}}", "8332", &[]),
            ("${UNSET:-${ALSO}}", "", &["ALSO"]),
            ("${SET:-${ALSO}}", "v", &[]),
            ("${SET:+alt}", "alt", &[]),
            ("${EMPTY:+alt}", "", &[]),
            ("${EMPTY+alt}", "alt", &[]),
            ("${UNSET+alt}", "", &[]),
            ("${SET:?need it}", "v", &[]),
            ("${EMPTY?need it}", "", &[]),
            ("${UNSET:-$$}", "$", &[]),
        ];
        for (input, output, missing) in cases {
            let mut unresolved = Vec::new();
            let got = interpolate(input, &env, &mut unresolved);
            assert_eq!(got.as_deref(), Ok(*output), "{input:?}");
            assert_eq!(unresolved, *missing, "{input:?}");
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str)] = &[
            (
                "${UNSET:?set UNSET to your node's address}",
                "required variable UNSET is not set: set UNSET to your node's address",
            ),
            ("${EMPTY:?}", "required variable EMPTY is not set"),
            ("${UNSET?no}", "required variable UNSET is not set: no"),
            (
                "${UNSET:-${EMPTY:?inner}}",
                "required variable EMPTY is not set: inner",
            ),
            ("a $ b", "invalid interpolation in \"a $ b\": a lone $"),
            (
                "trailing $",
                "invalid interpolation in \"trailing $\": a lone $",
            ),
            (
                "${}",
                "invalid interpolation in \"${}\": expected a variable name",
            ),
            (
                "${SET",
                "invalid interpolation in \"${SET\": unexpected character",
            ),
            (
                "${UNSET:-x",
                "invalid interpolation in \"${UNSET:-x\": missing }",
            ),
            (
                "${1A}",
                "invalid interpolation in \"${1A}\": expected a variable name",
            ),
            (
                "${A B}",
                "invalid interpolation in \"${A B}\": unexpected character",
            ),
        ];
        for (input, message) in cases {
            let mut unresolved = Vec::new();
            let got = interpolate(input, &env, &mut unresolved).unwrap_err();
            assert!(got.to_string().starts_with(message), "{input:?}: got {got}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut s = String::new();
        for _ in 0..100 {
            s.push_str("${U:-");
        }
        s.push_str(&"}".repeat(100));
        let e = interpolate(&s, &env, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("nest too deep"), "{e}");
    }
}
