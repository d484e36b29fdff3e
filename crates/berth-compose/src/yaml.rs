//! YAML text in, a tree of nodes that each know their file and line out.
//!
//! saphyr-parser gives the event stream with positions; the tree is built
//! here so that every key and value keeps its line through anchors,
//! aliases and merges. Compose files are YAML 1.1 in practice, so the YAML
//! 1.1 merge key (`<<: *base`, `<<: [*a, *b]`) is applied while the tree is
//! built: keys written in the mapping win over merged ones, and of several
//! merged mappings the earlier one wins. Scalars stay text (with whether
//! they were plain), and the mapper decides what a value means where it
//! reads it, as compose does per key.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Most nodes one file may expand to, aliases included: an alias copies its
/// anchor's subtree, so a few lines can otherwise expand exponentially.
pub const NODES_MAX: usize = 200_000;
/// Deepest nesting of collections.
pub const DEPTH_MAX: usize = 64;

/// Where a node was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    /// 1-based.
    pub line: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// `plain` is false for quoted and block scalars: `"true"` is a string.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in the order written; keys are unique (a duplicate is an error).
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

impl Node {
    pub fn new(value: Value, pos: Pos) -> Node {
        Node { value, pos }
    }

    pub fn string(text: impl Into<String>, pos: Pos) -> Node {
        Node::new(
            Value::Scalar {
                text: text.into(),
                plain: false,
            },
            pos,
        )
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Vec<(Key, Node)>> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn get_entry(&self, key: &str) -> Option<(&Key, &Node)> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, v)| (k, v))
    }

    /// A boolean as YAML 1.1 (which compose files are written in) reads one.
    pub fn as_bool(&self) -> Option<bool> {
        match &self.value {
            Value::Scalar { text, .. } => match text.as_str() {
                "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
                "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
                    Some(false)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The type of the node, for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A YAML problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Parse one YAML document (an empty file is `Null`; a second document is
/// an error: compose reads one).
pub fn parse(file: &str, text: &str) -> Result<Node, YamlError> {
    let file: Arc<str> = Arc::from(file);
    let mut b = Builder {
        file: file.clone(),
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
    };
    b.document()
}

struct Builder<'t> {
    file: Arc<str>,
    parser: Parser<'t, saphyr_parser::StrInput<'t>>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl<'t> Builder<'t> {
    fn pos(&self, span: &Span) -> Pos {
        Pos {
            file: self.file.clone(),
            line: span.start.line(),
        }
    }

    fn err(&self, span: &Span, message: impl Into<String>) -> YamlError {
        YamlError {
            pos: self.pos(span),
            message: message.into(),
        }
    }

    fn next(&mut self) -> Result<(Event<'t>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(YamlError {
                pos: Pos {
                    file: self.file.clone(),
                    line: e.marker().line(),
                },
                message: format!("invalid yaml: {}", e.info()),
            }),
            None => Err(YamlError {
                pos: Pos {
                    file: self.file.clone(),
                    line: 1,
                },
                message: "invalid yaml: unexpected end of input".into(),
            }),
        }
    }

    fn document(&mut self) -> Result<Node, YamlError> {
        let empty = Node::new(
            Value::Null,
            Pos {
                file: self.file.clone(),
                line: 1,
            },
        );
        let mut root = None;
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(root.unwrap_or(empty)),
                Event::DocumentStart(_) => {
                    if root.is_some() {
                        return Err(self.err(
                            &span,
                            "a compose file holds one yaml document, found a second one",
                        ));
                    }
                    let (ev, span) = self.next()?;
                    root = Some(self.node(ev, span, 0)?);
                }
                other => {
                    return Err(self.err(&span, format!("invalid yaml: unexpected {other:?}")));
                }
            }
        }
    }

    fn count(&mut self, span: &Span, n: usize) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > NODES_MAX {
            Err(self.err(
                span,
                format!("the file expands to more than {NODES_MAX} yaml nodes (aliases included)"),
            ))
        } else {
            Ok(())
        }
    }

    fn node(&mut self, ev: Event<'t>, span: Span, depth: usize) -> Result<Node, YamlError> {
        if depth > DEPTH_MAX {
            return Err(self.err(&span, format!("yaml nests deeper than {DEPTH_MAX} levels")));
        }
        self.count(&span, 1)?;
        let pos = self.pos(&span);
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == ScalarStyle::Plain && tag.is_none();
                let node = if plain && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Node::new(Value::Null, pos)
                } else {
                    Node::new(
                        Value::Scalar {
                            text: text.into_owned(),
                            plain,
                        },
                        pos,
                    )
                };
                (node, anchor)
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id).cloned() else {
                    return Err(self.err(&span, "alias to an unknown anchor"));
                };
                self.count(&span, size(&target))?;
                return Ok(target);
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, span, depth + 1)?);
                }
                (Node::new(Value::Seq(items), pos), anchor)
            }
            Event::MappingStart(anchor, _) => (self.mapping(pos, depth)?, anchor),
            other => return Err(self.err(&span, format!("invalid yaml: unexpected {other:?}"))),
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn mapping(&mut self, pos: Pos, depth: usize) -> Result<Node, YamlError> {
        let mut own: Vec<(Key, Node)> = Vec::new();
        let mut merged: Vec<(Key, Node)> = Vec::new();
        loop {
            let (ev, span) = self.next()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let key_node = self.node(ev, span, depth + 1)?;
            let name = match &key_node.value {
                Value::Scalar { text, .. } => text.clone(),
                Value::Null => "null".to_string(),
                _ => {
                    return Err(YamlError {
                        pos: key_node.pos,
                        message: "a mapping key must be a scalar".into(),
                    });
                }
            };
            let (ev, span) = self.next()?;
            let value = self.node(ev, span, depth + 1)?;
            let plain_merge =
                matches!(&key_node.value, Value::Scalar { text, plain: true } if text == "<<");
            if plain_merge {
                // Earlier sources win over later ones, and explicit keys
                // over all of them (YAML 1.1 merge key type).
                let sources: Vec<Node> = match value.value {
                    Value::Map(_) => vec![value],
                    Value::Seq(items) => items,
                    _ => {
                        return Err(YamlError {
                            pos: key_node.pos,
                            message: "a merge key `<<` takes a mapping or a list of mappings"
                                .into(),
                        });
                    }
                };
                for source in sources {
                    let Value::Map(entries) = source.value else {
                        return Err(YamlError {
                            pos: source.pos,
                            message: "a merge key `<<` takes a mapping or a list of mappings"
                                .into(),
                        });
                    };
                    for (k, v) in entries {
                        if !merged.iter().any(|(m, _)| m.name == k.name) {
                            merged.push((k, v));
                        }
                    }
                }
                continue;
            }
            if own.iter().any(|(k, _)| k.name == name) {
                return Err(YamlError {
                    pos: key_node.pos,
                    message: format!("duplicate key `{name}`"),
                });
            }
            own.push((
                Key {
                    name,
                    pos: key_node.pos,
                },
                value,
            ));
        }
        for (k, v) in merged {
            if !own.iter().any(|(o, _)| o.name == k.name) {
                own.push((k, v));
            }
        }
        Ok(Node::new(Value::Map(own), pos))
    }
}

/// Nodes in a subtree (for the expansion bound).
fn size(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + size(v)).sum::<usize>(),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Node {
        parse("f.yml", text).expect("parses")
    }

    #[test]
    fn lines_are_kept_for_keys_and_values() {
        let n = p("a: 1\nb:\n  c: x\n");
        let (k, v) = n.get_entry("b").unwrap();
        assert_eq!(k.pos.line, 2);
        assert_eq!(v.get("c").unwrap().pos.line, 3);
    }

    #[test]
    fn merge_keys_follow_yaml_1_1() {
        let n = p("x: &a {k: 1, j: 1}\ny: &b {k: 2, m: 2}\nz:\n  <<: [*a, *b]\n  j: 3\n");
        let z = n.get("z").unwrap();
        assert_eq!(z.get("k").unwrap().as_str(), Some("1"));
        assert_eq!(z.get("j").unwrap().as_str(), Some("3"));
        assert_eq!(z.get("m").unwrap().as_str(), Some("2"));
    }

    #[test]
    fn quoted_merge_key_is_a_plain_key() {
        let n = p("z:\n  \"<<\": 1\n");
        assert_eq!(n.get("z").unwrap().get("<<").unwrap().as_str(), Some("1"));
    }

    #[test]
    fn nulls_and_quoted_scalars() {
        let n = p("a:\nb: ~\nc: 'null'\nd: \"true\"\n");
        assert!(n.get("a").unwrap().is_null());
        assert!(n.get("b").unwrap().is_null());
        assert_eq!(n.get("c").unwrap().as_str(), Some("null"));
        assert_eq!(
            n.get("d").unwrap().value,
            Value::Scalar {
                text: "true".into(),
                plain: false
            }
        );
    }

    #[test]
    fn refusals() {
        let cases = [
            ("a: 1\na: 2\n", 2, "duplicate key `a`"),
            (
                "a: *nope\n",
                1,
                "invalid yaml: while parsing node, found unknown anchor",
            ),
            (
                "a: 1\n---\nb: 2\n",
                2,
                "a compose file holds one yaml document",
            ),
            ("a: [1, 2\n", 2, "invalid yaml"),
            ("a:\n  <<: 1\n", 2, "a merge key `<<` takes"),
        ];
        for (text, line, message) in cases {
            let e = parse("f.yml", text).unwrap_err();
            assert_eq!(e.pos.line, line, "{text:?}: {e:?}");
            assert!(e.message.starts_with(message), "{text:?}: {e:?}");
        }
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let e = parse("f.yml", &text).unwrap_err();
        assert!(e.message.contains("more than"), "{e:?}");
    }
}
