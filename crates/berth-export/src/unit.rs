//! Writing systemd unit files: sections of `Key=value` lines, and quoting
//! of command lines and values by systemd's rules (systemd.syntax(7),
//! systemd.service(5) "Command lines").

/// A unit file under construction: sections in insertion order, keys in
/// insertion order (systemd keeps the order of repeated keys).
#[derive(Debug, Default)]
pub(crate) struct UnitFile {
    header: Vec<String>,
    sections: Vec<(String, Vec<String>)>,
}

impl UnitFile {
    /// A `#` comment at the top of the file.
    pub fn header(&mut self, line: impl Into<String>) {
        self.header.push(line.into());
    }

    fn section(&mut self, name: &str) -> &mut Vec<String> {
        if let Some(i) = self.sections.iter().position(|(n, _)| n == name) {
            return &mut self.sections[i].1;
        }
        self.sections.push((name.to_string(), Vec::new()));
        &mut self.sections.last_mut().expect("just pushed").1
    }

    pub fn set(&mut self, section: &str, key: &str, value: impl AsRef<str>) {
        let line = format!("{key}={}", value.as_ref());
        self.section(section).push(line);
    }

    /// A comment inside a section, before the next key (why a key is
    /// missing or degraded).
    pub fn comment(&mut self, section: &str, text: impl AsRef<str>) {
        let line = format!("# {}", text.as_ref());
        self.section(section).push(line);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for h in &self.header {
            out.push_str("# ");
            out.push_str(h);
            out.push('\n');
        }
        for (name, lines) in &self.sections {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push('[');
            out.push_str(name);
            out.push_str("]\n");
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// Characters a word may hold and stay unquoted.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_./:=,+@".contains(c)
}

/// One word of a command line (or a value) by systemd's rules: plain
/// words as they are, anything else in double quotes with `\`, `"` and
/// control characters escaped. `%` is always doubled (specifiers); `$` is
/// doubled in command lines (`dollar`), where systemd expands variables.
pub(crate) fn word(s: &str, dollar: bool) -> String {
    let escape_specials = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '%' => out.push_str("%%"),
                '$' if dollar => out.push_str("$$"),
                _ => out.push(c),
            }
        }
        out
    };
    if !s.is_empty() && s.chars().all(is_plain) {
        return escape_specials(s);
    }
    let mut out = String::from("\"");
    for c in escape_specials(s).chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A command line: every word quoted by [`word`].
pub(crate) fn command_line<S: AsRef<str>>(argv: &[S], dollar: bool) -> String {
    argv.iter()
        .map(|a| word(a.as_ref(), dollar))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_plain_and_specials_are_escaped() {
        assert_eq!(word("/bin/berth-fake", true), "/bin/berth-fake");
        assert_eq!(word("0.0.0.0:8332", true), "0.0.0.0:8332");
        assert_eq!(word("a b", true), "\"a b\"");
        assert_eq!(word("", true), "\"\"");
        assert_eq!(word("50%", true), "\"50%%\"");
        assert_eq!(word("$HOME", true), "\"$$HOME\"");
        assert_eq!(word("$HOME", false), "\"$HOME\"");
        assert_eq!(word("say \"hi\"\\n", true), "\"say \\\"hi\\\"\\\\n\"");
        assert_eq!(word("a\nb", true), "\"a\\nb\"");
    }

    #[test]
    fn sections_keep_key_order_and_comments() {
        let mut u = UnitFile::default();
        u.header("generated");
        u.set("Unit", "Description", "x");
        u.set("Service", "Restart", "always");
        u.comment("Unit", "why");
        u.set("Unit", "After", "a.service");
        assert_eq!(
            u.render(),
            "# generated\n\n[Unit]\nDescription=x\n# why\nAfter=a.service\n\n[Service]\nRestart=always\n"
        );
    }
}
