//! Bounded capture of a command's output: the head and the tail are kept, the middle is
//! counted and dropped, so a command printing gigabytes costs a fixed amount of memory.

use std::collections::VecDeque;

/// Output kept within a byte limit: the first half of the limit and the last half.
#[derive(Debug)]
pub(crate) struct CappedOutput {
    head_limit: usize,
    tail_limit: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl CappedOutput {
    /// A capture keeping at most `limit` bytes (at least 2: one for the head, one for the tail).
    pub(crate) fn new(limit: usize) -> Self {
        let limit = limit.max(2);
        let head_limit = limit.div_ceil(2);
        Self {
            head_limit,
            tail_limit: limit - head_limit,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    /// Appends bytes.
    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.head.len() < self.head_limit {
            let taken = bytes.len().min(self.head_limit - self.head.len());
            self.head.extend_from_slice(&bytes[..taken]);
            bytes = &bytes[taken..];
        }
        if bytes.is_empty() {
            return;
        }
        if bytes.len() >= self.tail_limit {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_limit..]);
        } else {
            let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_limit);
            self.tail.drain(..overflow);
            self.tail.extend(bytes);
        }
    }

    /// Bytes seen so far, kept or not.
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Bytes seen but not kept.
    pub(crate) fn omitted(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    /// The kept tail, decoded (starting at a character boundary).
    pub(crate) fn tail_text(&self) -> String {
        let (front, back) = self.tail.as_slices();
        let mut bytes = Vec::with_capacity(self.tail.len());
        bytes.extend_from_slice(front);
        bytes.extend_from_slice(back);
        let start = if self.omitted() > 0 {
            skip_partial_char(&bytes)
        } else {
            0
        };
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// The output as text: everything when it fit, else the head, a marker saying how many
    /// bytes were omitted, and the tail. Invalid UTF-8 becomes U+FFFD.
    pub(crate) fn into_text(self) -> String {
        let omitted = self.omitted();
        if omitted == 0 {
            let mut bytes = self.head;
            bytes.extend(self.tail);
            return String::from_utf8(bytes)
                .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
        }
        let tail = self.tail_text();
        // A character cut in two by the omission would show as U+FFFD; drop its half.
        let head_end = complete_prefix_len(&self.head);
        let head = String::from_utf8_lossy(&self.head[..head_end]);
        let separator = if head.ends_with('\n') { "" } else { "\n" };
        format!("{head}{separator}{}\n{tail}", omission_marker(omitted))
    }
}

/// The marker put where output was dropped.
pub(crate) fn omission_marker(bytes: u64) -> String {
    format!("[… {bytes} bytes omitted …]")
}

/// Length of `bytes` without an incomplete UTF-8 sequence at its end.
pub(crate) fn complete_prefix_len(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        // `error_len() == None`: the input ended in the middle of a character.
        Err(error) if error.error_len().is_none() => error.valid_up_to(),
        Err(_) => bytes.len(),
    }
}

/// Number of UTF-8 continuation bytes at the start of `bytes` (at most 3).
fn skip_partial_char(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take(3)
        .take_while(|byte| (**byte & 0b1100_0000) == 0b1000_0000)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_within_the_limit() {
        let mut capture = CappedOutput::new(10);
        capture.push(b"hello ");
        capture.push(b"you");
        assert_eq!(capture.omitted(), 0);
        assert_eq!(capture.into_text(), "hello you");
    }

    #[test]
    fn keeps_head_and_tail_and_counts_the_rest() {
        let mut capture = CappedOutput::new(8);
        for chunk in [&b"0123"[..], b"456789", b"abcdefgh", b"XY"] {
            capture.push(chunk);
        }
        assert_eq!(capture.total(), 20);
        assert_eq!(capture.omitted(), 12);
        assert_eq!(capture.into_text(), "0123\n[… 12 bytes omitted …]\nghXY");
    }

    #[test]
    fn a_single_huge_chunk_keeps_only_its_end_in_the_tail() {
        let mut capture = CappedOutput::new(6);
        let chunk: Vec<u8> = (0..100u8).collect();
        capture.push(&chunk);
        assert_eq!(capture.head, [0, 1, 2]);
        assert_eq!(
            capture.tail.iter().copied().collect::<Vec<_>>(),
            [97, 98, 99]
        );
        assert!(capture.tail.capacity() < 64, "{}", capture.tail.capacity());
    }

    #[test]
    fn memory_stays_bounded_over_many_chunks() {
        let mut capture = CappedOutput::new(1024);
        let chunk = [b'a'; 4096];
        for _ in 0..10_000 {
            capture.push(&chunk);
        }
        assert_eq!(capture.total(), 40_960_000);
        assert!(
            capture.head.capacity() <= 1024,
            "{}",
            capture.head.capacity()
        );
        assert!(
            capture.tail.capacity() <= 8192,
            "{}",
            capture.tail.capacity()
        );
    }

    #[test]
    fn cut_characters_are_dropped_not_mangled() {
        let mut capture = CappedOutput::new(6);
        // "ééééé" is 10 bytes: the head keeps 3 bytes (one é and half of the next).
        capture.push("ééééé".as_bytes());
        let text = capture.into_text();
        assert!(!text.contains('\u{FFFD}'), "{text}");
        assert!(text.starts_with("é\n[… 4 bytes omitted …]\n"), "{text}");
        assert!(text.ends_with('é'), "{text}");
    }
}
