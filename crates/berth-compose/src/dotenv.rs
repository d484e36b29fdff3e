//! `.env` and `env_file` files: `KEY=VALUE` lines, `#` comments, blank
//! lines, an optional `export ` prefix, and values in single quotes
//! (literal) or double quotes (`\n`, `\"`, `\\` escapes). Values are not
//! interpolated (docker-compose 1.29 does not; see docs/import-compose.md).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvLine {
    pub line: usize,
    pub key: String,
    /// None: the line names a variable without `=` (taken from the shell).
    pub value: Option<String>,
}

/// Every assignment of the file, in order; an error names the line.
pub fn parse(text: &str) -> Result<Vec<EnvLine>, (usize, String)> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").map(str::trim_start).unwrap_or(l);
        let (key, value) = match l.split_once('=') {
            Some((k, v)) => (k.trim_end(), Some(v.trim_start())),
            None => (l, None),
        };
        let mut chars = key.chars();
        let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err((
                line,
                format!("invalid variable name {key:?}: expected KEY=VALUE"),
            ));
        }
        let value = match value {
            None => None,
            Some(v) => Some(unquote(v).map_err(|m| (line, m))?),
        };
        out.push(EnvLine {
            line,
            key: key.to_string(),
            value,
        });
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<String, String> {
    if let Some(rest) = v.strip_prefix('\'') {
        return match rest.find('\'') {
            Some(end) => Ok(rest[..end].to_string()),
            None => Err("unterminated single quote".into()),
        };
    }
    if let Some(rest) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Ok(out),
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c) => out.push(c),
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err("unterminated double quote".into());
    }
    // An unquoted value ends at ` #` (a comment).
    let v = match v.find(" #") {
        Some(i) => &v[..i],
        None => v,
    };
    Ok(v.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let text =
            "# comment\n\nA=1\nexport B = two words \nC='x # y'\nD=\"q\\\"n\"\nE=v # note\nF\nG=\n";
        let got: Vec<(usize, String, Option<String>)> = parse(text)
            .unwrap()
            .into_iter()
            .map(|l| (l.line, l.key, l.value))
            .collect();
        let want = [
            (3, "A", Some("1")),
            (4, "B", Some("two words")),
            (5, "C", Some("x # y")),
            (6, "D", Some("q\"n")),
            (7, "E", Some("v")),
            (8, "F", None),
            (9, "G", Some("")),
        ];
        let want: Vec<(usize, String, Option<String>)> = want
            .iter()
            .map(|(n, k, v)| (*n, k.to_string(), v.map(str::to_string)))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn errors() {
        assert_eq!(parse("A=1\n=2\n").unwrap_err().0, 2);
        assert_eq!(parse("A='x\n").unwrap_err().0, 1);
        assert_eq!(parse("1A=x\n").unwrap_err().0, 1);
    }
}
