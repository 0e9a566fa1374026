//! The scrape's body buffer, reused from one scrape to the next.
//!
//! A body is several MiB at 1,000 rows. Allocated anew for every scrape, it is above
//! the allocator's mmap threshold, so each scrape maps fresh memory and the kernel
//! faults in and zeroes every 4 KiB page of it on first write, then unmaps it when
//! the last response is done: 1,025 page faults per scrape at 1,000 rows, 130 with
//! the pool (`perf stat -e page-faults`, BENCHMARKS.md, sixth pass). The pool keeps
//! one spare body instead: a served body comes back when the last response holding
//! it drops it, and the next scrape renders into it. The spare is one body of memory
//! between scrapes; the peak is unchanged (the last body and the one being rendered).
use std::sync::{Arc, Mutex, PoisonError};

use hyper::body::Bytes;

/// At most one spare body, shared by the collector and the bodies it handed out.
#[derive(Debug, Default, Clone)]
pub struct BodyPool {
    spare: Arc<Mutex<Option<String>>>,
}

impl BodyPool {
    /// An empty buffer with room for at least `capacity` bytes: the spare when there
    /// is one. A spare more than twice that size is shrunk first, so that a burst of
    /// rows does not pin its memory.
    pub fn take(&self, capacity: usize) -> String {
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut body = spare.unwrap_or_default();
        body.clear();
        if body.capacity() > capacity.saturating_mul(2) {
            body.shrink_to(capacity);
        }
        body.reserve(capacity);
        body
    }

    /// `body` as the bytes every response of its collection shares; the buffer
    /// comes back to the pool when the last of them is dropped.
    pub fn share(&self, body: String) -> Bytes {
        Bytes::from_owner(Pooled {
            body,
            pool: self.clone(),
        })
    }
}

/// A body on loan to responses.
struct Pooled {
    body: String,
    pool: BodyPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.body.as_bytes()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let body = std::mem::take(&mut self.body);
        let mut spare = self
            .pool
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if spare.is_none() {
            *spare = Some(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_comes_back_when_its_last_response_is_done() {
        let pool = BodyPool::default();
        let mut body = pool.take(1 << 20);
        let buffer = body.as_ptr();
        body.push_str("metric 1\n");
        let shared = pool.share(body);
        let response = shared.clone();
        assert_eq!(&response[..], b"metric 1\n");
        drop(shared);
        // Still held by one response: the next body is a new buffer.
        let other = pool.take(1 << 20);
        assert_ne!(other.as_ptr(), buffer);
        drop(response);
        let reused = pool.take(1 << 20);
        assert_eq!(reused.as_ptr(), buffer, "the served buffer is reused");
        assert!(reused.is_empty());
    }

    #[test]
    fn a_much_larger_spare_is_shrunk_to_what_is_needed() {
        let pool = BodyPool::default();
        drop(pool.share(pool.take(8 << 20)));
        let small = pool.take(1 << 20);
        assert!(small.capacity() >= 1 << 20);
        assert!(small.capacity() < 2 << 20, "{}", small.capacity());
    }
}
