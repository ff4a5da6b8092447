//! Payload storage: a per-core slab of fixed-size chunks, and byte queues
//! indexed by offset that take chunks only while they hold data.
//!
//! A connection's send queue (unacknowledged and unsent bytes) and receive
//! queue (unread in-order bytes, then out-of-order bytes beyond holes) are
//! each a [`ChunkBuf`]: a short list of chunk numbers, one per
//! [`CHUNK`]-byte block of the queue, where a block nobody wrote yet has no
//! chunk. An empty queue holds no chunk and no heap memory at all, so an
//! idle connection costs only its control block; windows are limits, not
//! allocations. Chunks come from the core's [`Slab`] and go back to it as
//! soon as the bytes in them are acknowledged or read. Nothing here is
//! shared between cores.

use super::ring::Ring;

/// Bytes per chunk.
pub const CHUNK: usize = 2048;
/// Block numbers held inline (8 KiB of queue without a heap block).
const INLINE_BLOCKS: usize = 4;
const NONE: u32 = u32::MAX;

/// The chunks of one core.
#[derive(Debug)]
pub struct Slab {
    // Boxed so growing the table never copies the chunks themselves.
    #[allow(clippy::vec_box)]
    chunks: Vec<Box<[u8; CHUNK]>>,
    free: Vec<u32>,
    limit: usize,
    failed: u64,
    /// The chunk lent to the application now ([`Slab::lend`]): its number
    /// and whether its queue let go of it meanwhile.
    lent: Option<(u32, bool)>,
    /// What holds a lent chunk's place in `chunks`.
    stand_in: Option<Box<[u8; CHUNK]>>,
}

/// A chunk moved out of its [`Slab`] while the application reads it, so
/// that it reads the bytes where they were reassembled (no copy) while the
/// stack stays free to use: the slab holds a stand-in in its place. Hand
/// it back with [`Slab::give_back`] before the next lend.
#[must_use = "a lent chunk goes back with Slab::give_back"]
#[derive(Debug)]
pub struct Lent {
    chunk: Box<[u8; CHUNK]>,
    slot: u32,
    start: u16,
    len: u16,
}

impl Lent {
    /// The lent bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.chunk[self.start as usize..self.start as usize + self.len as usize]
    }
}

impl Slab {
    /// A slab that may grow to `limit_bytes` (rounded up to chunks).
    pub fn new(limit_bytes: usize) -> Slab {
        Slab {
            chunks: Vec::new(),
            free: Vec::new(),
            limit: limit_bytes.div_ceil(CHUNK).min(NONE as usize - 1),
            failed: 0,
            lent: None,
            stand_in: None,
        }
    }

    /// Moves chunk `c` out for the application to read; a stand-in takes
    /// its place. One chunk is lent at a time.
    fn lend(&mut self, c: u32, start: usize, len: usize) -> Lent {
        debug_assert!(self.lent.is_none(), "one lent chunk at a time");
        let stand_in = self.stand_in.take().unwrap_or_else(|| Box::new([0; CHUNK]));
        self.lent = Some((c, false));
        Lent {
            chunk: std::mem::replace(&mut self.chunks[c as usize], stand_in),
            slot: c,
            start: start as u16,
            len: len as u16,
        }
    }

    /// Puts a lent chunk back in its place. If its queue let go of it
    /// meanwhile (the application consumed, closed or aborted), it becomes
    /// free only now, so no one wrote into its stand-in.
    pub fn give_back(&mut self, l: Lent) {
        let freed = match self.lent.take() {
            Some((c, freed)) if c == l.slot => freed,
            other => {
                debug_assert!(false, "gave back chunk {} while {other:?} was lent", l.slot);
                self.lent = other;
                return;
            }
        };
        self.stand_in = Some(std::mem::replace(
            &mut self.chunks[l.slot as usize],
            l.chunk,
        ));
        if freed {
            self.free.push(l.slot);
        }
    }

    /// A chunk, or `None` when the slab is at its limit.
    fn alloc(&mut self) -> Option<u32> {
        if let Some(c) = self.free.pop() {
            return Some(c);
        }
        if self.chunks.len() >= self.limit {
            self.failed += 1;
            return None;
        }
        self.chunks.push(Box::new([0; CHUNK]));
        Some((self.chunks.len() - 1) as u32)
    }

    fn can_supply(&self, n: usize) -> bool {
        self.free.len() + (self.limit - self.chunks.len().min(self.limit)) >= n
    }

    fn release(&mut self, c: u32) {
        if c == NONE {
            return;
        }
        if let Some((l, freed)) = &mut self.lent {
            if *l == c {
                *freed = true;
                return;
            }
        }
        self.free.push(c);
    }

    /// Chunks handed out now.
    pub fn in_use(&self) -> usize {
        self.chunks.len() - self.free.len()
    }

    /// Chunks ever made (the slab's high-water mark).
    pub fn capacity(&self) -> usize {
        self.chunks.len()
    }

    /// Allocations refused because the slab was at its limit.
    pub fn failed(&self) -> u64 {
        self.failed
    }
}

/// A byte queue over slab chunks, addressed by offset from its head.
#[derive(Debug, Default)]
pub struct ChunkBuf {
    /// Offset of byte 0 inside the first block.
    head: u32,
    blocks: Ring<u32, INLINE_BLOCKS>,
}

impl ChunkBuf {
    /// True when the queue holds no chunk.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Writes `data` at offset `off`, taking chunks as needed. Returns false
    /// (having written nothing) if the slab cannot supply them.
    pub fn write(&mut self, slab: &mut Slab, off: u32, data: &[u8]) -> bool {
        if data.is_empty() {
            return true;
        }
        let start = self.head as usize + off as usize;
        let end = start + data.len();
        let (first, last) = (start / CHUNK, (end - 1) / CHUNK);
        while self.blocks.len() <= last {
            self.blocks.push_back(NONE);
        }
        if first == last {
            // Within one block (every message shorter than a chunk).
            let mut c = self.blocks[first];
            if c == NONE {
                let Some(n) = slab.alloc() else {
                    self.trim_tail();
                    return false;
                };
                c = n;
                self.blocks[first] = c;
            }
            let o = start % CHUNK;
            slab.chunks[c as usize][o..o + data.len()].copy_from_slice(data);
            return true;
        }
        // Check that every missing chunk can be had, so a failure writes
        // nothing.
        let missing = (first..=last).filter(|&b| self.blocks[b] == NONE).count();
        if !slab.can_supply(missing) {
            slab.failed += 1;
            self.trim_tail();
            return false;
        }
        for b in first..=last {
            if self.blocks[b] == NONE {
                // Cannot fail: checked above.
                self.blocks[b] = slab.alloc().unwrap_or(NONE);
            }
        }
        let mut pos = start;
        let mut src = data;
        while !src.is_empty() {
            let (b, o) = (pos / CHUNK, pos % CHUNK);
            let n = (CHUNK - o).min(src.len());
            let c = self.blocks[b] as usize;
            slab.chunks[c][o..o + n].copy_from_slice(&src[..n]);
            src = &src[n..];
            pos += n;
        }
        true
    }

    /// Drops trailing blocks that hold no chunk.
    fn trim_tail(&mut self) {
        while self.blocks.back() == Some(&NONE) {
            self.blocks.pop_back();
        }
        if self.blocks.is_empty() {
            self.head = 0;
        }
    }

    /// Calls `f` with the stored bytes from `off` for `len` bytes, in
    /// order, one slice per chunk. The range must have been written.
    pub fn read(&self, slab: &Slab, off: u32, len: u32, mut f: impl FnMut(&[u8])) {
        let mut pos = self.head as usize + off as usize;
        let mut left = len as usize;
        while left > 0 {
            let (b, o) = (pos / CHUNK, pos % CHUNK);
            let n = (CHUNK - o).min(left);
            match self.blocks.get(b) {
                Some(&c) if c != NONE => f(&slab.chunks[c as usize][o..o + n]),
                // Never written: cannot happen for ranges the caller
                // tracked; hand out nothing rather than garbage.
                _ => return,
            }
            pos += n;
            left -= n;
        }
    }

    /// Copies `dst.len()` bytes from offset `off` into `dst`.
    pub fn copy_out(&self, slab: &Slab, off: u32, dst: &mut [u8]) {
        let mut at = 0;
        self.read(slab, off, dst.len() as u32, |s| {
            dst[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        });
    }

    /// The contiguous bytes at offset 0, at most `len` (up to the end of the
    /// first chunk).
    pub fn first<'s>(&self, slab: &'s Slab, len: u32) -> &'s [u8] {
        match self.blocks.front() {
            Some(&c) if c != NONE && len > 0 => {
                let o = self.head as usize;
                let n = (CHUNK - o).min(len as usize);
                &slab.chunks[c as usize][o..o + n]
            }
            _ => &[],
        }
    }

    /// Lends the chunk holding the contiguous bytes at offset 0, at most
    /// `len` (up to the end of the first chunk); `None` when there are
    /// none. See [`Lent`].
    pub fn lend_first(&self, slab: &mut Slab, len: u32) -> Option<Lent> {
        match self.blocks.front() {
            Some(&c) if c != NONE && len > 0 => {
                let o = self.head as usize;
                Some(slab.lend(c, o, (CHUNK - o).min(len as usize)))
            }
            _ => None,
        }
    }

    /// Removes the first `n` bytes; `remaining` is how many stored bytes
    /// are still of interest after them (0 empties the queue, giving
    /// every chunk back).
    pub fn advance(&mut self, slab: &mut Slab, n: u32, remaining_span: u32) {
        if remaining_span == 0 {
            self.clear(slab);
            return;
        }
        let mut pos = self.head as usize + n as usize;
        while pos >= CHUNK {
            match self.blocks.pop_front() {
                Some(c) => slab.release(c),
                None => break,
            }
            pos -= CHUNK;
        }
        self.head = pos as u32;
        if self.blocks.is_empty() {
            self.clear(slab);
        }
    }

    /// Gives every chunk back. The block list goes back inline, so a
    /// connection that exchanges small messages never allocates one.
    pub fn clear(&mut self, slab: &mut Slab) {
        for &c in self.blocks.iter() {
            slab.release(c);
        }
        self.blocks.clear();
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(b: &ChunkBuf, slab: &Slab, off: u32, len: u32) -> Vec<u8> {
        let mut v = Vec::new();
        b.read(slab, off, len, |s| v.extend_from_slice(s));
        v
    }

    #[test]
    fn writes_across_chunks_read_back_and_free() {
        let mut slab = Slab::new(1 << 20);
        let mut b = ChunkBuf::default();
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        assert!(b.write(&mut slab, 0, &data));
        assert_eq!(slab.in_use(), 3);
        assert_eq!(collect(&b, &slab, 100, 4000), data[100..4100]);
        b.advance(&mut slab, 2100, 2900);
        assert_eq!(slab.in_use(), 2, "the first chunk went back");
        assert_eq!(collect(&b, &slab, 0, 2900), data[2100..]);
        assert_eq!(b.first(&slab, 5000), &data[2100..4096]);
        b.advance(&mut slab, 2900, 0);
        assert_eq!(slab.in_use(), 0);
        assert!(b.is_empty());
    }

    #[test]
    fn sparse_writes_take_only_the_chunks_they_touch() {
        let mut slab = Slab::new(1 << 20);
        let mut b = ChunkBuf::default();
        assert!(b.write(&mut slab, 10_000, b"late"));
        assert_eq!(slab.in_use(), 1, "holes hold no chunk");
        assert!(b.write(&mut slab, 0, b"early"));
        assert_eq!(slab.in_use(), 2);
        assert_eq!(collect(&b, &slab, 10_000, 4), b"late");
        b.clear(&mut slab);
        assert_eq!(slab.in_use(), 0);
    }

    #[test]
    fn a_lent_chunk_reads_in_place_and_stays_out_of_reach_until_given_back() {
        let mut slab = Slab::new(1 << 20);
        let mut b = ChunkBuf::default();
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        assert!(b.write(&mut slab, 0, &data));
        let l = b.lend_first(&mut slab, 3000).unwrap();
        assert_eq!(l.bytes(), &data[..CHUNK]);
        // The application consumes it all while it is lent: its chunk is
        // not free for anyone until it comes back.
        b.advance(&mut slab, CHUNK as u32, 3000 - CHUNK as u32);
        let mut other = ChunkBuf::default();
        assert!(other.write(&mut slab, 0, &[9; 100]));
        assert_ne!(other.blocks[0], l.slot, "the lent chunk was not reused");
        let slot = l.slot;
        slab.give_back(l);
        assert!(slab.free.contains(&slot), "free once given back");
        assert_eq!(collect(&b, &slab, 0, 3000 - CHUNK as u32), data[CHUNK..]);
        // A lent chunk still queued goes back to its queue, bytes intact.
        let l = b.lend_first(&mut slab, 100).unwrap();
        assert_eq!(l.bytes(), &data[CHUNK..CHUNK + 100]);
        slab.give_back(l);
        assert_eq!(collect(&b, &slab, 0, 3000 - CHUNK as u32), data[CHUNK..]);
        b.clear(&mut slab);
        other.clear(&mut slab);
        assert_eq!(slab.in_use(), 0);
    }

    #[test]
    fn an_exhausted_slab_refuses_whole_writes() {
        let mut slab = Slab::new(CHUNK);
        let mut b = ChunkBuf::default();
        assert!(!b.write(&mut slab, 0, &[1; CHUNK + 1]));
        assert_eq!(slab.in_use(), 0, "nothing kept from a refused write");
        assert!(b.write(&mut slab, 0, &[1; CHUNK]));
        assert!(slab.failed() >= 1);
    }
}
