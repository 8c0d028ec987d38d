//! YAML into JSON values, remembering where each value was written.
//!
//! Handlers are written in YAML (JSON is YAML too), and every validation error must say
//! where the offending value is. [`parse`] turns a YAML stream into [`Document`]s: a
//! [`serde_json::Value`] plus the [`Position`] of every value and map key, addressed by
//! JSON pointer (RFC 6901).
//!
//! Scalars follow the YAML 1.2 core schema:
//!
//! | written                                   | becomes                        |
//! |-------------------------------------------|--------------------------------|
//! | nothing, `~`, `null`, `Null`, `NULL`      | `null`                         |
//! | `true`, `True`, `TRUE` (and `false`…)     | a boolean                      |
//! | `12`, `-3`, `0x1F`, `0o17`                | an integer (i64, or u64)       |
//! | `1.5`, `-2e3`, `.5`                       | a float                        |
//! | anything else, `yes`, `on`, quoted, `\|`, `>` | a string                   |
//!
//! JSON has no infinities, NaN or integers beyond 64 bits, so `.inf`, `.nan` and such
//! integers are an error naming their position (quote them to get the text). The tags
//! `!!str`, `!!int`, `!!float`, `!!bool` and `!!null` are honoured; other tags are ignored.
//! Map keys are the text as written (`1: a` has the key `"1"`); a map or list used as a
//! key is an error, and so is a key written twice in one map. An alias (`*name`) yields a
//! copy of its anchor's value, and merge keys (`<<: *defaults`) are supported.
//!
//! Lines and columns are 1-based, and columns count characters, not bytes (a tab or an
//! `é` is one column).

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::iter::Peekable;
use std::str::Chars;
use std::sync::Arc;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

/// Collections nested deeper than this are refused: deep values would overflow the
/// stack when cloned, compared or dropped (serde_json refuses them for the same reason).
const MAX_DEPTH: usize = 128;

/// Aliases may add at most this many values to a stream: without a cap, a few lines of
/// nested aliases ("billion laughs") expand to gigabytes.
const MAX_ALIAS_VALUES: usize = 100_000;

/// 1-based line and column; columns count characters, not bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

impl Position {
    /// The first character of a text.
    pub const START: Position = Position { line: 1, column: 1 };

    fn from_marker(marker: &Marker) -> Position {
        // yaml-rust2 counts lines from 1 but columns from 0.
        Position {
            line: marker.line().max(1),
            column: marker.col() + 1,
        }
    }
}

impl fmt::Display for Position {
    /// `line:column`, ready to follow a file name.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.line, self.column)
    }
}

/// A parse error, with where it happened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// Where the offending text starts.
    pub position: Position,
    /// What is wrong, in plain words.
    pub message: String,
}

impl YamlError {
    fn new(position: Position, message: impl Into<String>) -> YamlError {
        YamlError {
            position,
            message: message.into(),
        }
    }

    fn from_scan(error: &ScanError) -> YamlError {
        YamlError::new(
            Position::from_marker(error.marker()),
            format!("invalid YAML: {}", plain_words(error.info())),
        )
    }
}

/// Rewords the scanner's most common complaints into what a handler author should check.
fn plain_words(info: &str) -> String {
    let hint = match info {
        "while parsing a block mapping, did not find expected key" => {
            "expected a `key: value` entry here; check this line's indentation against the lines above"
        }
        "while parsing a block collection, did not find expected '-' indicator" => {
            "expected a `- ` list item here; check this line's indentation against the lines above"
        }
        "mapping values are not allowed in this context" => {
            "unexpected `:` here; quote the value if it contains `: `, or fix the indentation"
        }
        "while parsing a flow sequence, expected ',' or ']'" => {
            "expected `,` or `]` in this `[...]` list"
        }
        "while parsing a flow mapping, did not find expected ',' or '}'" => {
            "expected `,` or `}` in this `{...}` map"
        }
        "while parsing node, found unknown anchor" => {
            "this alias names an anchor that is not defined before it (write `&name` before `*name`)"
        }
        "while scanning a quoted scalar, found unexpected end of stream" => {
            "a quoted string is never closed"
        }
        "while parsing a node, did not find expected node content" => "expected a value here",
        "tab cannot be used as indentation"
        | "tabs disallowed within this context (block indentation)" => {
            "a tab is used for indentation; indent with spaces"
        }
        other => return other.to_owned(),
    };
    hint.to_owned()
}

/// One YAML document as JSON, with the positions of its values and keys.
#[derive(Debug, Clone)]
pub struct Document {
    value: Value,
    root: Node,
    source: Arc<Source>,
}

impl Document {
    /// The document's value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The document's value, without its positions.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// Where the value at this JSON pointer (RFC 6901, e.g. "/actions/0/args/0", "" for the
    /// root) starts.
    ///
    /// An empty value (`key:` with nothing after it) is placed just after its `:` or `-`.
    pub fn position(&self, pointer: &str) -> Option<Position> {
        self.node(pointer).map(|node| node.position)
    }

    /// Where the key of the map entry at this pointer was written (for "unknown field" errors).
    pub fn key_position(&self, pointer: &str) -> Option<Position> {
        self.node(pointer).and_then(|node| node.key_position)
    }

    /// The position of the pointer, or of its nearest ancestor that has one (never fails;
    /// the root's position is the fallback).
    pub fn nearest(&self, pointer: &str) -> Position {
        let mut node = &self.root;
        if let Some(tokens) = pointer_tokens(pointer) {
            for token in tokens {
                match node.child(&token) {
                    Some(child) => node = child,
                    None => break,
                }
            }
        }
        node.position
    }

    /// The document rooted at `pointer` (positions keep their file coordinates). Used to
    /// validate each handler of a file that holds a list of handlers.
    pub fn subdocument(&self, pointer: &str) -> Option<Document> {
        let node = self.node(pointer)?;
        let value = self.value.pointer(pointer)?;
        Some(Document {
            value: value.clone(),
            root: node.clone(),
            source: Arc::clone(&self.source),
        })
    }

    /// Maps a (1-based) line/column *inside the string value* at `pointer` to file
    /// coordinates.
    ///
    /// Exact for single-line plain and quoted scalars (escapes such as `\t` or `''`
    /// included) and for literal (`|`) block scalars; multi-line plain or quoted scalars and
    /// folded (`>`) scalars are followed through their line folding, which is exact unless
    /// a folded scalar has more-indented lines. Falls back to the value's own position when
    /// the pointer is not a string written in this file (e.g. it came from an alias), and to
    /// [`nearest`](Self::nearest) when the pointer does not exist.
    pub fn position_in_string(&self, pointer: &str, line: usize, column: usize) -> Position {
        let Some(node) = self.node(pointer) else {
            return self.nearest(pointer);
        };
        let (Some(scalar), Some(Value::String(text))) = (node.scalar, self.value.pointer(pointer))
        else {
            return node.position;
        };
        let (line, column) = (line.max(1), column.max(1));
        let Some((target, column)) = char_index(text, line, column) else {
            return node.position;
        };
        match scalar.style {
            TScalarStyle::Literal | TScalarStyle::Folded => {
                // The scanner marks the first non-empty content line, after the block's
                // indentation; leading empty lines are the value's leading newlines.
                let leading = text.chars().take_while(|&c| c == '\n').count();
                let first_line = scalar.start.line.saturating_sub(leading).max(1);
                if line <= leading {
                    return Position {
                        line: first_line + line - 1,
                        column: scalar.start.column,
                    };
                }
                if scalar.style == TScalarStyle::Literal {
                    // Literal lines are the file's lines minus the block's indentation.
                    return Position {
                        line: first_line + line - 1,
                        column: scalar.start.column + column - 1,
                    };
                }
                let rest = &text[leading..];
                self.source
                    .walk(scalar, scalar.start, rest, target - leading)
            }
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
                let after_quote = Position {
                    line: scalar.start.line,
                    column: scalar.start.column + 1,
                };
                self.source.walk(scalar, after_quote, text, target)
            }
            TScalarStyle::Plain => self.source.walk(scalar, scalar.start, text, target),
        }
    }

    fn node(&self, pointer: &str) -> Option<&Node> {
        let mut node = &self.root;
        for token in pointer_tokens(pointer)? {
            node = node.child(&token)?;
        }
        Some(node)
    }
}

/// Splits a JSON pointer into unescaped reference tokens; `None` if it is malformed.
fn pointer_tokens(pointer: &str) -> Option<impl Iterator<Item = String> + '_> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return None;
    }
    Some(
        pointer
            .split('/')
            .skip(1)
            .map(|token| token.replace("~1", "/").replace("~0", "~")),
    )
}

/// An array index token as RFC 6901 writes it: digits, no sign, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    let well_formed = !token.is_empty()
        && token.bytes().all(|byte| byte.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if well_formed {
        token.parse().ok()
    } else {
        None
    }
}

/// The char index in `text` of the 1-based `line`/`column`, and the column, clamped to
/// just past the end of its line. `None` if the text has fewer lines.
fn char_index(text: &str, line: usize, column: usize) -> Option<(usize, usize)> {
    let mut index = 0;
    let mut lines = text.split('\n');
    for _ in 1..line {
        index += lines.next()?.chars().count() + 1;
    }
    let column = column.min(lines.next()?.chars().count() + 1);
    Some((index + column - 1, column))
}

/// The positions of one value and, below it, of its elements or entries.
#[derive(Debug, Clone)]
struct Node {
    position: Position,
    /// For a map entry's value: where its key was written.
    key_position: Option<Position>,
    /// For a string written as a scalar in this file: how to find characters inside it.
    scalar: Option<ScalarSpan>,
    children: Children,
}

#[derive(Debug, Clone)]
enum Children {
    Leaf,
    List(Vec<Node>),
    Map(HashMap<String, Node>),
}

impl Node {
    fn leaf(position: Position) -> Node {
        Node {
            position,
            key_position: None,
            scalar: None,
            children: Children::Leaf,
        }
    }

    fn child(&self, token: &str) -> Option<&Node> {
        match &self.children {
            Children::Leaf => None,
            Children::List(items) => items.get(array_index(token)?),
            Children::Map(entries) => entries.get(token),
        }
    }

    /// This node as an alias's copy: everything is placed at the alias.
    fn relocated(&self, position: Position) -> Node {
        let children = match &self.children {
            Children::Leaf => Children::Leaf,
            Children::List(items) => {
                Children::List(items.iter().map(|item| item.relocated(position)).collect())
            }
            Children::Map(entries) => Children::Map(
                entries
                    .iter()
                    .map(|(key, entry)| {
                        let mut entry = entry.relocated(position);
                        entry.key_position = Some(position);
                        (key.clone(), entry)
                    })
                    .collect(),
            ),
        };
        Node {
            position,
            key_position: None,
            scalar: None,
            children,
        }
    }
}

/// Where a string scalar's text starts in the source, and how it was written.
#[derive(Debug, Clone, Copy)]
struct ScalarSpan {
    style: TScalarStyle,
    /// The scanner's mark: the opening quote, the first character of a plain scalar, or
    /// the first non-empty content line of a block scalar (after its indentation).
    start: Position,
}

/// The text a stream was parsed from, shared by its documents.
struct Source {
    text: String,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl fmt::Debug for Source {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Source")
            .field("bytes", &self.text.len())
            .field("lines", &self.line_starts.len())
            .finish()
    }
}

impl Source {
    fn new(text: &str) -> Source {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(offset, _)| offset + 1))
            .collect();
        Source {
            text: text.to_owned(),
            line_starts,
        }
    }

    /// The byte offset of a position (a column just past the end of the text is allowed).
    fn offset(&self, position: Position) -> Option<usize> {
        let start = *self.line_starts.get(position.line.checked_sub(1)?)?;
        self.text[start..]
            .char_indices()
            .map(|(offset, _)| start + offset)
            .chain(std::iter::once(self.text.len()))
            .nth(position.column.checked_sub(1)?)
    }

    fn position_at(&self, offset: usize) -> Position {
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        Position {
            line: line.max(1),
            column: self
                .text
                .get(start..offset)
                .map_or(0, |s| s.chars().count())
                + 1,
        }
    }

    /// The last character before `position` that is not a blank or a line break.
    fn previous_token(&self, position: Position) -> Option<(Position, char)> {
        let offset = self.offset(position)?;
        let (at, character) = self.text[..offset]
            .char_indices()
            .rev()
            .find(|&(_, c)| !matches!(c, ' ' | '\t' | '\r' | '\n'))?;
        Some((self.position_at(at), character))
    }

    /// Where an empty value really is. The parser marks the token after it (often on a
    /// later line, and for a list item, past the next item's `-`), so step back to the
    /// indicator that introduced it and place the value just after it.
    fn empty_value_position(&self, marker: Position, place: EmptyPlace) -> Option<Position> {
        let marked = self
            .offset(marker)
            .and_then(|offset| self.text[offset..].chars().next());
        if place == EmptyPlace::MapValue && marked == Some(':') {
            // In a flow map (`{a: , b: 1}`) the parser marks the value's own `:`.
            return Some(Position {
                line: marker.line,
                column: marker.column + 1,
            });
        }
        let (mut at, mut indicator) = self.previous_token(marker)?;
        if place == EmptyPlace::ListItem && indicator == '-' && at.line == marker.line {
            // A `-` on the marker's line belongs to the next item: ours is the one before.
            (at, indicator) = self.previous_token(at)?;
        }
        let introduces = match place {
            EmptyPlace::MapValue => indicator == ':',
            EmptyPlace::ListItem => matches!(indicator, '-' | '[' | ','),
            EmptyPlace::Document => indicator == '-',
        };
        introduces.then_some(Position {
            line: at.line,
            column: at.column + 1,
        })
    }

    /// Where a block list starts: the parser marks an indentless list (`key:` then `- a`
    /// at the key's indentation) at its first item's content rather than at its `-`.
    fn list_start(&self, marker: Position) -> Position {
        let at_indicator = self
            .offset(marker)
            .and_then(|offset| self.text[offset..].chars().next())
            .is_some_and(|c| c == '-' || c == '[');
        if at_indicator {
            return marker;
        }
        match self.previous_token(marker) {
            Some((dash, '-')) if dash.line == marker.line => dash,
            _ => marker,
        }
    }

    /// Follows the characters of `value` through the source from `start` (the position of
    /// its first character) and returns where the `target`th one was written.
    ///
    /// The value is the guide: source characters that equal the next value character are
    /// taken, escapes and `''` stand for one character, line breaks stand for the space or
    /// newline that folding made of them, and other blanks were dropped by folding.
    fn walk(&self, scalar: ScalarSpan, start: Position, value: &str, target: usize) -> Position {
        let Some(offset) = self.offset(start) else {
            return scalar.start;
        };
        let mut source = self.text[offset..].chars().peekable();
        let mut here = start;
        let mut last: Option<Position> = None;
        for (index, wanted) in value.chars().enumerate() {
            let found = loop {
                let Some(&current) = source.peek() else {
                    return last.unwrap_or(scalar.start);
                };
                let at = here;
                match current {
                    '\\' if scalar.style == TScalarStyle::DoubleQuoted => {
                        bump(&mut source, &mut here);
                        match source.peek() {
                            // An escaped line break joins the lines without a space.
                            Some('\n' | '\r') => {
                                while matches!(source.peek(), Some('\n' | '\r')) {
                                    bump(&mut source, &mut here);
                                }
                                while matches!(source.peek(), Some(' ' | '\t')) {
                                    bump(&mut source, &mut here);
                                }
                            }
                            Some(&escape) => {
                                let length = match escape {
                                    'x' => 3,
                                    'u' => 5,
                                    'U' => 9,
                                    _ => 1,
                                };
                                for _ in 0..length {
                                    bump(&mut source, &mut here);
                                }
                                break at;
                            }
                            None => return last.unwrap_or(scalar.start),
                        }
                    }
                    '\'' if scalar.style == TScalarStyle::SingleQuoted => {
                        // Inside the value, a quote can only be the first of `''`.
                        bump(&mut source, &mut here);
                        bump(&mut source, &mut here);
                        break at;
                    }
                    current if current == wanted => {
                        bump(&mut source, &mut here);
                        break at;
                    }
                    '\n' if wanted == ' ' || wanted == '\n' => {
                        bump(&mut source, &mut here);
                        break at;
                    }
                    ' ' | '\t' | '\r' | '\n' => bump(&mut source, &mut here),
                    // The text does not fold the way we model it: give the best guess.
                    _ => {
                        return if index == target {
                            at
                        } else {
                            last.unwrap_or(at)
                        };
                    }
                }
            };
            if index == target {
                return found;
            }
            last = Some(found);
        }
        // The target is just past the last character.
        last.map_or(start, |last| Position {
            line: last.line,
            column: last.column + 1,
        })
    }
}

/// Takes one source character, keeping `here` at the position of the next one.
fn bump(source: &mut Peekable<Chars<'_>>, here: &mut Position) {
    if source.next() == Some('\n') {
        *here = Position {
            line: here.line + 1,
            column: 1,
        };
    } else {
        here.column += 1;
    }
}

/// Parses every document of a YAML stream (documents separated by `---`); an empty text is
/// zero documents.
pub fn parse(text: &str) -> Result<Vec<Document>, YamlError> {
    let source = Arc::new(Source::new(text));
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::new(&source);
    let mut documents = Vec::new();
    loop {
        let (event, marker) = parser
            .next_token()
            .map_err(|error| YamlError::from_scan(&error))?;
        let position = Position::from_marker(&marker);
        match event {
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            Event::DocumentStart => builder.anchors.clear(),
            Event::Alias(anchor) => builder.alias(anchor, position)?,
            Event::Scalar(text, style, anchor, tag) => {
                builder.scalar(text, style, anchor, tag.as_ref(), position)?;
            }
            Event::SequenceStart(anchor, _) => builder.open(anchor, position, false)?,
            Event::MappingStart(anchor, _) => builder.open(anchor, position, true)?,
            Event::SequenceEnd | Event::MappingEnd => builder.close()?,
        }
        if let Some(built) = builder.root.take() {
            documents.push(Document {
                value: built.value,
                root: built.node,
                source: Arc::clone(&source),
            });
        }
    }
    Ok(documents)
}

/// What an empty scalar is: it decides which indicator introduced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmptyPlace {
    Document,
    ListItem,
    MapValue,
}

/// A finished value with its positions, and what the limits need to know about it.
#[derive(Debug, Clone)]
struct Built {
    value: Value,
    node: Node,
    /// How many values it holds, itself included.
    size: usize,
    /// How many collections deep it goes (0 for a scalar).
    height: usize,
}

/// A key waiting for its value.
#[derive(Debug)]
struct PendingKey {
    name: String,
    position: Position,
    /// A plain `<<`: its value is merged into the map.
    merge: bool,
}

/// A collection being built.
#[derive(Debug)]
enum Frame {
    List {
        position: Position,
        anchor: usize,
        values: Vec<Value>,
        nodes: Vec<Node>,
        size: usize,
        height: usize,
    },
    Map {
        position: Position,
        anchor: usize,
        values: Map<String, Value>,
        nodes: HashMap<String, Node>,
        key: Option<PendingKey>,
        merges: Vec<Built>,
        size: usize,
        height: usize,
    },
}

/// Builds values from parser events with an explicit stack, so deep input cannot
/// overflow the call stack.
#[derive(Debug)]
struct Builder<'a> {
    source: &'a Source,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Built>,
    /// Values added by aliases so far in this stream.
    alias_values: usize,
    /// The last finished document.
    root: Option<Built>,
}

impl<'a> Builder<'a> {
    fn new(source: &'a Source) -> Builder<'a> {
        Builder {
            source,
            stack: Vec::new(),
            anchors: HashMap::new(),
            alias_values: 0,
            root: None,
        }
    }

    /// Whether the next finished node is a map key.
    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
        marker: Position,
    ) -> Result<(), YamlError> {
        let empty = text.is_empty() && style == TScalarStyle::Plain;
        let position = if empty {
            let place = match self.stack.last() {
                None => EmptyPlace::Document,
                Some(Frame::List { .. }) => EmptyPlace::ListItem,
                Some(Frame::Map { .. }) => EmptyPlace::MapValue,
            };
            self.source
                .empty_value_position(marker, place)
                .or_else(|| self.pending_key_position())
                .unwrap_or(marker)
        } else {
            marker
        };
        if self.expects_key() {
            let merge = style == TScalarStyle::Plain && tag.is_none() && text == "<<";
            if anchor != 0 {
                self.anchors.insert(
                    anchor,
                    Built {
                        value: Value::String(text.clone()),
                        node: Node::leaf(position),
                        size: 1,
                        height: 0,
                    },
                );
            }
            return self.key(text, position, merge);
        }
        let value = resolve_scalar(&text, style, tag, position)?;
        let mut node = Node::leaf(position);
        if value.is_string() {
            node.scalar = Some(ScalarSpan {
                style,
                start: marker,
            });
        }
        let built = Built {
            value,
            node,
            size: 1,
            height: 0,
        };
        if anchor != 0 {
            self.anchors.insert(anchor, built.clone());
        }
        self.finish(built)
    }

    fn pending_key_position(&self) -> Option<Position> {
        match self.stack.last() {
            Some(Frame::Map { key: Some(key), .. }) => Some(key.position),
            _ => None,
        }
    }

    fn alias(&mut self, anchor: usize, position: Position) -> Result<(), YamlError> {
        let Some(anchored) = self.anchors.get(&anchor) else {
            return Err(YamlError::new(
                position,
                "this alias names an anchor that is not defined before it in this document (write `&name` before `*name`)",
            ));
        };
        if self.expects_key() {
            let name = match &anchored.value {
                Value::String(text) => text.clone(),
                Value::Array(_) | Value::Object(_) => {
                    return Err(YamlError::new(
                        position,
                        "a map or list cannot be used as a key; keys must be plain text",
                    ));
                }
                scalar => scalar.to_string(),
            };
            return self.key(name, position, false);
        }
        self.alias_values += anchored.size;
        if self.alias_values > MAX_ALIAS_VALUES {
            return Err(YamlError::new(
                position,
                format!(
                    "aliases expand to more than {MAX_ALIAS_VALUES} values; write the values out or use fewer nested aliases"
                ),
            ));
        }
        if self.stack.len() + anchored.height > MAX_DEPTH {
            return Err(too_deep(position));
        }
        let built = Built {
            value: anchored.value.clone(),
            node: anchored.node.relocated(position),
            size: anchored.size,
            height: anchored.height,
        };
        self.finish(built)
    }

    fn key(&mut self, name: String, position: Position, merge: bool) -> Result<(), YamlError> {
        let Some(Frame::Map {
            position: map_position,
            nodes,
            key,
            ..
        }) = self.stack.last_mut()
        else {
            return Ok(());
        };
        // A block map is reported by the scanner after its first key: the key is where
        // the map really starts.
        if nodes.is_empty() && key.is_none() && position < *map_position {
            *map_position = position;
        }
        // `<<` may repeat: each one adds another merge source.
        if let Some(first) = nodes.get(&name).filter(|_| !merge) {
            let first = first.key_position.unwrap_or(first.position);
            return Err(YamlError::new(
                position,
                format!(
                    "duplicate key `{name}` in this map (first written at line {}, column {}); remove or rename one of them",
                    first.line, first.column
                ),
            ));
        }
        *key = Some(PendingKey {
            name,
            position,
            merge,
        });
        Ok(())
    }

    fn open(&mut self, anchor: usize, position: Position, is_map: bool) -> Result<(), YamlError> {
        if self.expects_key() {
            return Err(YamlError::new(
                position,
                "a map or list cannot be used as a key; keys must be plain text",
            ));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(too_deep(position));
        }
        self.stack.push(if is_map {
            Frame::Map {
                position,
                anchor,
                values: Map::new(),
                nodes: HashMap::new(),
                key: None,
                merges: Vec::new(),
                size: 1,
                height: 1,
            }
        } else {
            Frame::List {
                position,
                anchor,
                values: Vec::new(),
                nodes: Vec::new(),
                size: 1,
                height: 1,
            }
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), YamlError> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        let (built, anchor) = match frame {
            Frame::List {
                position,
                anchor,
                values,
                nodes,
                size,
                height,
            } => {
                // An indentless list's first item can come before the mark of its start.
                let position = self.source.list_start(position);
                let node = Node {
                    position,
                    key_position: None,
                    scalar: None,
                    children: Children::List(nodes),
                };
                let value = Value::Array(values);
                (
                    Built {
                        value,
                        node,
                        size,
                        height,
                    },
                    anchor,
                )
            }
            Frame::Map {
                position,
                anchor,
                mut values,
                mut nodes,
                merges,
                mut size,
                height,
                ..
            } => {
                for merged in merges {
                    // Counting the whole source over-counts skipped keys: the alias
                    // cap only needs an upper bound.
                    size += merged.size;
                    merge_into(&mut values, &mut nodes, merged)?;
                }
                let node = Node {
                    position,
                    key_position: None,
                    scalar: None,
                    children: Children::Map(nodes),
                };
                (
                    Built {
                        value: Value::Object(values),
                        node,
                        size,
                        height,
                    },
                    anchor,
                )
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, built.clone());
        }
        self.finish(built)
    }

    /// Hands a finished value to the collection around it, or makes it the document.
    fn finish(&mut self, built: Built) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => self.root = Some(built),
            Some(Frame::List {
                values,
                nodes,
                size,
                height,
                ..
            }) => {
                *size += built.size;
                *height = (*height).max(built.height + 1);
                values.push(built.value);
                nodes.push(built.node);
            }
            Some(Frame::Map {
                values,
                nodes,
                key,
                merges,
                size,
                height,
                ..
            }) => {
                let Some(key) = key.take() else {
                    // Keys are taken by `key` before they get here.
                    return Ok(());
                };
                *height = (*height).max(built.height + 1);
                if key.merge {
                    merges.push(built);
                    return Ok(());
                }
                *size += built.size;
                let mut node = built.node;
                node.key_position = Some(key.position);
                values.insert(key.name.clone(), built.value);
                nodes.insert(key.name, node);
            }
        }
        Ok(())
    }
}

/// Adds the entries of a `<<` value (a map, or a list of maps) that the map does not have
/// yet: keys written in the map, and earlier merges, win.
fn merge_into(
    values: &mut Map<String, Value>,
    nodes: &mut HashMap<String, Node>,
    merged: Built,
) -> Result<(), YamlError> {
    let position = merged.node.position;
    let not_a_map = || {
        YamlError::new(
            position,
            "a merge key `<<` needs a map or a list of maps (e.g. `<<: *defaults`)",
        )
    };
    let sources: Vec<(Value, Children)> = match (merged.value, merged.node.children) {
        (map @ Value::Object(_), children) => vec![(map, children)],
        (Value::Array(items), Children::List(item_nodes)) => items
            .into_iter()
            .zip(item_nodes.into_iter().map(|node| node.children))
            .collect(),
        _ => return Err(not_a_map()),
    };
    for source in sources {
        let (Value::Object(entries), Children::Map(mut entry_nodes)) = source else {
            return Err(not_a_map());
        };
        for (name, value) in entries {
            if values.contains_key(&name) {
                continue;
            }
            if let Some(entry_node) = entry_nodes.remove(&name) {
                nodes.insert(name.clone(), entry_node);
            }
            values.insert(name, value);
        }
    }
    Ok(())
}

fn too_deep(position: Position) -> YamlError {
    YamlError::new(
        position,
        format!("values are nested more than {MAX_DEPTH} levels deep; flatten this structure"),
    )
}

/// Turns a (non-key) scalar into JSON by the YAML 1.2 core schema and its tag.
fn resolve_scalar(
    text: &str,
    style: TScalarStyle,
    tag: Option<&Tag>,
    position: Position,
) -> Result<Value, YamlError> {
    let core_tag = tag
        .filter(|tag| tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!")
        .map(|tag| tag.suffix.as_str());
    let wrong = |kind: &str| {
        YamlError::new(
            position,
            format!("`{text}` is tagged `!!{kind}` but is not a valid {kind}"),
        )
    };
    match core_tag {
        Some("str") => return Ok(Value::String(text.to_owned())),
        Some("null") => {
            return match text {
                "" | "~" | "null" | "Null" | "NULL" => Ok(Value::Null),
                _ => Err(wrong("null")),
            };
        }
        Some("bool") => {
            return core_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| wrong("bool"));
        }
        Some("int") => {
            return core_integer(text, position)
                .transpose()
                .unwrap_or_else(|| Err(wrong("int")));
        }
        Some("float") => {
            return match core_integer(text, position) {
                Ok(Some(Value::Number(number))) => {
                    Ok(number.as_f64().map_or(Value::Number(number), Value::from))
                }
                _ => core_float(text, position)
                    .transpose()
                    .unwrap_or_else(|| Err(wrong("float"))),
            };
        }
        _ => {}
    }
    // A non-specific `!` tag, like quoting, means "a string".
    let non_specific = tag.is_some_and(|tag| {
        (tag.handle == "!" && tag.suffix.is_empty()) || (tag.handle.is_empty() && tag.suffix == "!")
    });
    if style != TScalarStyle::Plain || non_specific {
        return Ok(Value::String(text.to_owned()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(boolean) = core_bool(text) {
        return Ok(Value::Bool(boolean));
    }
    if let Some(integer) = core_integer(text, position)? {
        return Ok(integer);
    }
    if let Some(float) = core_float(text, position)? {
        return Ok(float);
    }
    Ok(Value::String(text.to_owned()))
}

fn core_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// `[-+]?[0-9]+`, `0o[0-7]+` or `0x[0-9a-fA-F]+`; `Ok(None)` when the text is not one.
fn core_integer(text: &str, position: Position) -> Result<Option<Value>, YamlError> {
    let (digits, radix, signed) = if let Some(octal) = text.strip_prefix("0o") {
        (octal, 8, false)
    } else if let Some(hex) = text.strip_prefix("0x") {
        (hex, 16, false)
    } else {
        (text.strip_prefix(['-', '+']).unwrap_or(text), 10, true)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Ok(None);
    }
    let value = if signed {
        text.parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.trim_start_matches('+').parse::<u64>().map(Value::from))
    } else {
        u64::from_str_radix(digits, radix).map(Value::from)
    };
    value.map(Some).map_err(|_| {
        YamlError::new(
            position,
            format!("`{text}` does not fit in a 64-bit integer; quote it if you meant the text"),
        )
    })
}

/// The core schema's floats; `Ok(None)` when the text is not one.
fn core_float(text: &str, position: Position) -> Result<Option<Value>, YamlError> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let special =
        matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN");
    if special {
        return Err(YamlError::new(
            position,
            format!(
                "`{text}` is a YAML float that JSON cannot represent (no infinity or NaN); quote it if you meant the text"
            ),
        ));
    }
    if !is_core_float_syntax(unsigned) {
        return Ok(None);
    }
    match text
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
    {
        Some(number) => Ok(Some(Value::Number(number))),
        None => Err(YamlError::new(
            position,
            format!("`{text}` is too large for a JSON number; quote it if you meant the text"),
        )),
    }
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, without the sign.
fn is_core_float_syntax(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => {
            digits(whole) && digits(fraction) && !(whole.is_empty() && fraction.is_empty())
        }
        None => !mantissa.is_empty() && digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|exponent| {
        let exponent = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
        !exponent.is_empty() && digits(exponent)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SEED: &str = "\
name: Pull Request Linter
events: [pull_request.opened, pull_request.reopened]
criteria: source.repository is Hello-World
actions:
  - action: shell_command
    name: linter
    args: ['pip install pylint && pylint ./']
    on_failure:
      - action: pull_request_comment
        args: ['lint failed: {{ linter.output }}']
  - action: pull_request_comment
    args: ['hey @{{ source.user }} pylint returned {{ linter.output }}']
";

    fn at(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    fn one(text: &str) -> Document {
        let mut documents = parse(text).expect("valid YAML");
        assert_eq!(documents.len(), 1, "expected one document in {text:?}");
        documents.remove(0)
    }

    fn error(text: &str) -> YamlError {
        parse(text).expect_err("invalid YAML")
    }

    #[test]
    fn seed_handler_values_and_positions() {
        let document = one(SEED);
        assert_eq!(document.value()["name"], "Pull Request Linter");
        assert_eq!(
            document.value()["events"],
            json!(["pull_request.opened", "pull_request.reopened"])
        );
        assert_eq!(
            document.value()["actions"][0]["on_failure"][0]["args"][0],
            "lint failed: {{ linter.output }}"
        );
        assert_eq!(document.position(""), Some(at(1, 1)));
        assert_eq!(document.position("/name"), Some(at(1, 7)));
        assert_eq!(document.key_position("/name"), Some(at(1, 1)));
        assert_eq!(document.position("/events"), Some(at(2, 9)));
        assert_eq!(document.position("/events/1"), Some(at(2, 31)));
        assert_eq!(document.position("/criteria"), Some(at(3, 11)));
        assert_eq!(document.key_position("/criteria"), Some(at(3, 1)));
        assert_eq!(document.position("/actions"), Some(at(5, 3)));
        assert_eq!(document.key_position("/actions"), Some(at(4, 1)));
        assert_eq!(document.position("/actions/0"), Some(at(5, 5)));
        assert_eq!(document.key_position("/actions/0/name"), Some(at(6, 5)));
        assert_eq!(document.position("/actions/0/args/0"), Some(at(7, 12)));
        assert_eq!(document.key_position("/actions/0/args"), Some(at(7, 5)));
        assert_eq!(document.position("/actions/0/on_failure"), Some(at(9, 7)));
        assert_eq!(
            document.position("/actions/0/on_failure/0/args/0"),
            Some(at(10, 16))
        );
        assert_eq!(
            document.key_position("/actions/0/on_failure/0/args"),
            Some(at(10, 9))
        );
        assert_eq!(document.position("/actions/1/args/0"), Some(at(12, 12)));
        // Array elements have no key; missing pointers have no position.
        assert_eq!(document.key_position("/actions/0"), None);
        assert_eq!(document.position("/actions/2"), None);
        assert_eq!(document.position("/nope"), None);
        assert_eq!(document.position("actions"), None);
        assert_eq!(document.position("/actions/00"), None);
        assert_eq!(document.nearest("/actions/0/timeout"), at(5, 5));
        assert_eq!(document.nearest("/actions/9/args"), at(5, 3));
        assert_eq!(document.nearest("garbage"), at(1, 1));
        assert_eq!(document.clone().into_value(), *document.value());
    }

    #[test]
    fn template_errors_map_into_quoted_and_plain_strings() {
        let document = one(SEED);
        // `{{` in 'lint failed: {{ linter.output }}' is the 14th character of the string.
        assert_eq!(
            document.position_in_string("/actions/0/on_failure/0/args/0", 1, 14),
            at(10, 30)
        );
        assert_eq!(document.position_in_string("/criteria", 1, 8), at(3, 18));
        // Past the end of the line: just after the last character.
        assert_eq!(document.position_in_string("/criteria", 1, 500), at(3, 43));
        // Not a string: the value's own position.
        assert_eq!(document.position_in_string("/actions/0", 1, 1), at(5, 5));
        assert_eq!(document.position_in_string("/missing", 1, 1), at(1, 1));
    }

    #[test]
    fn position_in_string_follows_escapes() {
        let document = one("a: \"x\\ty\\u00e9z {{ b }}\"\nc: 'it''s {{ d }}'\n");
        assert_eq!(document.value()["a"], "x\tyéz {{ b }}");
        // x=5, \t=6..7, y=8, \u00e9=9..14, z=15, space=16, {=17
        assert_eq!(document.position_in_string("/a", 1, 7), at(1, 17));
        assert_eq!(document.position_in_string("/a", 1, 4), at(1, 9));
        assert_eq!(document.value()["c"], "it's {{ d }}");
        assert_eq!(document.position_in_string("/c", 1, 3), at(2, 7));
        assert_eq!(document.position_in_string("/c", 1, 6), at(2, 11));
    }

    #[test]
    fn position_in_string_for_block_scalars() {
        let text = "\
run: |

  echo one
    {{ two }}
folded: >
  first line
  {{ second }}
after: x
";
        let document = one(text);
        assert_eq!(document.value()["run"], "\necho one\n  {{ two }}\n");
        assert_eq!(document.position("/run"), Some(at(3, 3)));
        assert_eq!(document.position_in_string("/run", 1, 1), at(2, 3));
        assert_eq!(document.position_in_string("/run", 2, 6), at(3, 8));
        assert_eq!(document.position_in_string("/run", 3, 3), at(4, 5));
        // Past the end of a line: just after its last character.
        assert_eq!(document.position_in_string("/run", 2, 99), at(3, 11));
        assert_eq!(document.value()["folded"], "first line {{ second }}\n");
        assert_eq!(document.position_in_string("/folded", 1, 1), at(6, 3));
        // "first line " is 11 characters: the 12th is `{` on the next line.
        assert_eq!(document.position_in_string("/folded", 1, 12), at(7, 3));
    }

    #[test]
    fn position_in_multi_line_flow_scalars() {
        let document = one("a: one\n   two {{ x }}\nb: \"p\n  q {{ y }}\"\n");
        assert_eq!(document.value()["a"], "one two {{ x }}");
        assert_eq!(document.position_in_string("/a", 1, 9), at(2, 8));
        assert_eq!(document.value()["b"], "p q {{ y }}");
        assert_eq!(document.position_in_string("/b", 1, 5), at(4, 5));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let document = one("héhé: {ünï: \"çà {{ x }}\"}\n");
        assert_eq!(document.key_position("/héhé/ünï"), Some(at(1, 8)));
        assert_eq!(document.position("/héhé/ünï"), Some(at(1, 13)));
        assert_eq!(document.position_in_string("/héhé/ünï", 1, 4), at(1, 17));
    }

    #[test]
    fn a_list_of_handlers_splits_into_subdocuments() {
        let text = "\
- name: first
  events: push
  actions: []
- name: second
  events: [issues.opened]
  actions:
    - action: shell_command
";
        let document = one(text);
        let second = document.subdocument("/1").expect("second handler");
        assert_eq!(second.value()["name"], "second");
        assert_eq!(second.position(""), Some(at(4, 3)));
        assert_eq!(second.position("/name"), Some(at(4, 9)));
        assert_eq!(second.key_position("/events"), Some(at(5, 3)));
        assert_eq!(second.position("/actions/0/action"), Some(at(7, 15)));
        assert_eq!(second.nearest("/actions/0/args"), at(7, 7));
        let first = document.subdocument("/0").expect("first handler");
        assert_eq!(first.value()["actions"], json!([]));
        assert_eq!(first.position("/actions"), Some(at(3, 12)));
        assert!(document.subdocument("/2").is_none());
    }

    #[test]
    fn multiple_documents() {
        assert!(parse("").expect("empty").is_empty());
        assert!(parse("# just a comment\n").expect("comment").is_empty());
        let documents = parse("a: 1\n---\nb: 2\n...\n--- plain\n---\n").expect("valid");
        let values: Vec<&Value> = documents.iter().map(Document::value).collect();
        assert_eq!(
            values,
            [
                &json!({"a": 1}),
                &json!({"b": 2}),
                &json!("plain"),
                &Value::Null
            ]
        );
        assert_eq!(documents[1].position("/b"), Some(at(3, 4)));
        assert_eq!(documents[2].position(""), Some(at(5, 5)));
    }

    #[test]
    fn json_text_parses() {
        let text =
            r#"{"name": "x", "list": [1, -2.5, null, true, "s"], "nested": {"a/b": {"~": 0}}}"#;
        let document = one(text);
        let expected: Value = serde_json::from_str(text).expect("valid JSON");
        assert_eq!(*document.value(), expected);
        assert_eq!(document.position("/list/1"), Some(at(1, 27)));
        assert_eq!(document.position("/nested/a~1b/~0"), Some(at(1, 75)));
        assert_eq!(document.key_position("/nested/a~1b"), Some(at(1, 62)));
    }

    #[test]
    fn duplicate_keys_name_the_second_occurrence() {
        let failure = error("name: a\nevents: push\nname: b\n");
        assert_eq!(failure.position, at(3, 1));
        assert!(failure.message.contains("`name`"), "{failure}");
        assert!(failure.message.contains("line 1, column 1"), "{failure}");
        let failure = error("a: {x: 1, \"x\": 2}\n");
        assert_eq!(failure.position, at(1, 11));
    }

    #[test]
    fn collection_keys_are_refused() {
        let failure = error("? [a, b]\n: 1\n");
        assert_eq!(failure.position, at(1, 3));
        assert!(failure.message.contains("key"), "{failure}");
        assert!(error("{[a]: 1}").message.contains("key"));
    }

    #[test]
    fn aliases_copy_values_and_sit_at_the_alias() {
        let text = "\
defaults: &defaults
  action: shell_command
  timeout: 30s
word: &w hello
steps:
  - *defaults
  - *w
  - <<: *defaults
    timeout: 1m
*w : key from alias
";
        let document = one(text);
        assert_eq!(
            document.value()["steps"],
            json!([
                {"action": "shell_command", "timeout": "30s"},
                "hello",
                {"timeout": "1m", "action": "shell_command"},
            ])
        );
        assert_eq!(document.value()["hello"], "key from alias");
        assert_eq!(document.position("/steps/0"), Some(at(6, 5)));
        assert_eq!(document.position("/steps/0/action"), Some(at(6, 5)));
        assert_eq!(document.position("/steps/1"), Some(at(7, 5)));
        assert_eq!(document.position("/steps/2/timeout"), Some(at(9, 14)));
        assert_eq!(document.position("/steps/2/action"), Some(at(8, 9)));
        assert_eq!(document.position("/defaults/action"), Some(at(2, 11)));
        // Strings from an alias are not in the file where the alias is.
        assert_eq!(document.position_in_string("/steps/1", 1, 3), at(7, 5));
        let failure = error("a: *nowhere\n");
        assert_eq!(failure.position.line, 1);
        assert!(failure.message.contains("anchor"), "{failure}");
        assert!(error("a: &x 1\nb:\n  <<: *x\n").message.contains("merge"));
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..8 {
            let previous = format!("*a{}", level - 1);
            let items = [previous.as_str(); 10].join(", ");
            bomb.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        let failure = error(&bomb);
        assert!(failure.message.contains("aliases expand"), "{failure}");
        let deep = format!(
            "{}x{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert!(error(&deep).message.contains("nested"));
        let deep_block: String = (0..MAX_DEPTH + 1)
            .map(|depth| format!("{}- \n", "  ".repeat(depth)))
            .collect();
        assert!(error(&deep_block).message.contains("nested"));
        let fine = format!("{}x{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(parse(&fine).expect("at the limit").len(), 1);
    }

    #[test]
    fn scalars_follow_the_yaml_1_2_core_schema() {
        let cases: &[(&str, Value)] = &[
            ("", Value::Null),
            ("~", Value::Null),
            ("null", Value::Null),
            ("NULL", Value::Null),
            ("true", json!(true)),
            ("True", json!(true)),
            ("FALSE", json!(false)),
            ("yes", json!("yes")),
            ("no", json!("no")),
            ("on", json!("on")),
            ("off", json!("off")),
            ("tRUE", json!("tRUE")),
            ("0", json!(0)),
            ("-12", json!(-12)),
            ("+7", json!(7)),
            ("012", json!(12)),
            ("0x1F", json!(31)),
            ("0o17", json!(15)),
            ("0o18", json!("0o18")),
            ("18446744073709551615", json!(u64::MAX)),
            ("-9223372036854775808", json!(i64::MIN)),
            ("1.5", json!(1.5)),
            ("-2e3", json!(-2000.0)),
            (".5", json!(0.5)),
            ("1.", json!(1.0)),
            ("1e+2", json!(100.0)),
            ("1e", json!("1e")),
            (".", json!(".")),
            ("1_000", json!("1_000")),
            ("inf", json!("inf")),
            ("nan", json!("nan")),
            ("12:30", json!("12:30")),
            ("'true'", json!("true")),
            ("\"12\"", json!("12")),
            ("!!str 12", json!("12")),
            ("!!str", json!("")),
            ("!!int '12'", json!(12)),
            ("!!float 3", json!(3.0)),
            ("!!bool 'TRUE'", json!(true)),
            ("!!null ''", Value::Null),
            ("! 12", json!("12")),
            ("!custom 12", json!(12)),
            ("hello world", json!("hello world")),
        ];
        for (written, expected) in cases {
            let document = one(&format!("v: {written}\n"));
            assert_eq!(document.value()["v"], *expected, "`{written}`");
        }
        // Keys are the text as written.
        let document = one("1: a\ntrue: b\n~: c\n0x10: d\n");
        assert_eq!(
            *document.value(),
            json!({"1": "a", "true": "b", "~": "c", "0x10": "d"})
        );
    }

    #[test]
    fn numbers_json_cannot_hold_are_errors() {
        for written in [".inf", "-.Inf", ".NaN", "99999999999999999999", "1e999"] {
            let failure = error(&format!("a: 1\nv:  {written}\n"));
            assert_eq!(failure.position, at(2, 5), "`{written}`: {failure}");
        }
        // The scanner marks a tagged scalar at its text, after the tag.
        assert_eq!(error("v: !!int x").position, at(1, 10));
        assert_eq!(one("v: '.inf'").value()["v"], ".inf");
    }

    #[test]
    fn empty_values_sit_after_their_indicator() {
        let text = "\
name:
args:
  -
  - x
  -
indentless:
-
-
- y
-
nested:
  - -
  - -
map: {a: , b: 1}
last: # comment
";
        let document = one(text);
        assert_eq!(
            document.value(),
            &json!({
                "name": null,
                "args": [null, "x", null],
                "indentless": [null, null, "y", null],
                "nested": [[null], [null]],
                "map": {"a": null, "b": 1},
                "last": null,
            })
        );
        assert_eq!(document.position("/name"), Some(at(1, 6)));
        assert_eq!(document.position("/args"), Some(at(3, 3)));
        assert_eq!(document.position("/args/0"), Some(at(3, 4)));
        assert_eq!(document.position("/args/2"), Some(at(5, 4)));
        assert_eq!(document.position("/indentless"), Some(at(7, 1)));
        assert_eq!(document.position("/indentless/0"), Some(at(7, 2)));
        assert_eq!(document.position("/indentless/1"), Some(at(8, 2)));
        assert_eq!(document.position("/indentless/3"), Some(at(10, 2)));
        assert_eq!(document.position("/nested/0/0"), Some(at(12, 6)));
        assert_eq!(document.position("/nested/1/0"), Some(at(13, 6)));
        assert_eq!(document.position("/map/a"), Some(at(14, 9)));
        // A comment hides the `:`; the key is the next best place.
        assert_eq!(document.position("/last"), Some(at(15, 1)));
        assert_eq!(one("---\n").position(""), Some(at(1, 4)));
    }

    #[test]
    fn keys_with_slashes_and_tildes_are_escaped_in_pointers() {
        let document = one("a/b: 1\n\"~c\": 2\n");
        assert_eq!(document.position("/a~1b"), Some(at(1, 6)));
        assert_eq!(document.key_position("/~0c"), Some(at(2, 1)));
        assert_eq!(document.position("/a/b"), None);
    }

    #[test]
    fn malformed_yaml_reports_the_scanner_position() {
        let failure = error("name: x\nactions:\n  - a: 1\n - b: 2\n");
        assert_eq!(failure.position.line, 4, "{failure:?}");
        assert!(failure.message.starts_with("invalid YAML: "), "{failure}");
        let failure = error("a: [1, 2\nb: 3\n");
        assert!(failure.position.line >= 2, "{failure:?}");
        let failure = error("a: \"never closed\n");
        assert!(failure.message.contains("never closed"), "{failure}");
        let failure = error("a: b: c\n");
        assert_eq!(failure.position, at(1, 5));
        assert!(failure.message.contains("`:`"), "{failure}");
    }
}
