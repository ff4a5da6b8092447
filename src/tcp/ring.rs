//! A double-ended queue that keeps its first `N` elements inside the
//! connection block and moves to the heap only when it needs more.
//!
//! A request/response connection has one segment in flight and one chunk
//! in each queue at a time. In a `VecDeque` those live in separate heap
//! blocks: three more cache misses per segment when the connection's block
//! is cold (16,384 connections and up). Held inline they sit in the lines
//! the segment touches anyway; a bulk transfer spills to the heap once and
//! gives the heap block back when its queue empties.

/// Where the elements are.
#[derive(Debug, Clone)]
enum Store<T, const N: usize> {
    Inline([T; N]),
    Heap(Box<[T]>),
}

/// A ring buffer of `T` with `N` elements inline.
#[derive(Debug, Clone)]
pub struct Ring<T, const N: usize> {
    head: u32,
    len: u32,
    store: Store<T, N>,
}

impl<T: Copy + Default, const N: usize> Default for Ring<T, N> {
    fn default() -> Self {
        Ring {
            head: 0,
            len: 0,
            store: Store::Inline([T::default(); N]),
        }
    }
}

impl<T: Copy + Default, const N: usize> Ring<T, N> {
    fn slots(&self) -> &[T] {
        match &self.store {
            Store::Inline(a) => a,
            Store::Heap(b) => b,
        }
    }

    fn slots_mut(&mut self) -> &mut [T] {
        match &mut self.store {
            Store::Inline(a) => a,
            Store::Heap(b) => b,
        }
    }

    /// The storage index of element `i` (which may be `len`, for a push).
    #[inline]
    fn at(&self, i: usize) -> usize {
        let cap = self.slots().len();
        let j = self.head as usize + i;
        if j >= cap {
            j - cap
        } else {
            j
        }
    }

    /// Elements held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the elements are on the heap.
    #[cfg(test)]
    pub fn spilled(&self) -> bool {
        matches!(self.store, Store::Heap(_))
    }

    /// Element `i`, if there is one.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        (i < self.len()).then(|| &self.slots()[self.at(i)])
    }

    /// Element `i`, mutably, if there is one.
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        if i >= self.len() {
            return None;
        }
        let j = self.at(i);
        Some(&mut self.slots_mut()[j])
    }

    /// The first element.
    #[inline]
    pub fn front(&self) -> Option<&T> {
        self.get(0)
    }

    /// The last element.
    #[inline]
    pub fn back(&self) -> Option<&T> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// Appends `v`, moving to (or growing) the heap when full.
    #[inline]
    pub fn push_back(&mut self, v: T) {
        if self.len() == self.slots().len() {
            self.grow();
        }
        let j = self.at(self.len());
        self.slots_mut()[j] = v;
        self.len += 1;
    }

    /// Removes the first element.
    #[inline]
    pub fn pop_front(&mut self) -> Option<T> {
        let v = *self.front()?;
        self.head = self.at(1) as u32;
        self.len -= 1;
        if self.len == 0 {
            self.head = 0;
        }
        Some(v)
    }

    /// Removes the last element.
    #[inline]
    pub fn pop_back(&mut self) -> Option<T> {
        let v = *self.back()?;
        self.len -= 1;
        if self.len == 0 {
            self.head = 0;
        }
        Some(v)
    }

    #[cold]
    fn grow(&mut self) {
        let cap = (self.slots().len() * 2).max(8);
        let mut b = vec![T::default(); cap].into_boxed_slice();
        for (i, v) in self.iter().enumerate() {
            b[i] = *v;
        }
        self.store = Store::Heap(b);
        self.head = 0;
    }

    /// The elements, first to last.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        (0..self.len()).map(move |i| &self.slots()[self.at(i)])
    }

    /// The number of leading elements for which `pred` holds (the
    /// elements must be partitioned by it, as for a sorted slice).
    pub fn partition_point(&self, mut pred: impl FnMut(&T) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(&self.slots()[self.at(mid)]) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Empties the ring and gives back its heap block, if it had one.
    pub fn clear(&mut self) {
        *self = Ring::default();
    }
}

impl<T: Copy + Default, const N: usize> std::ops::Index<usize> for Ring<T, N> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        match self.get(i) {
            Some(v) => v,
            None => panic!("ring index {i} out of range (len {})", self.len),
        }
    }
}

impl<T: Copy + Default, const N: usize> std::ops::IndexMut<usize> for Ring<T, N> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        let len = self.len;
        match self.get_mut(i) {
            Some(v) => v,
            None => panic!("ring index {i} out of range (len {len})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Random pushes and pops at both ends, checked against `VecDeque`,
    /// across the move to the heap and back.
    #[test]
    fn behaves_as_a_deque_inline_and_spilled() {
        let mut r: Ring<u32, 2> = Ring::default();
        let mut d: VecDeque<u32> = VecDeque::new();
        let mut x = 0x2545_f491_u32;
        let mut spilled = false;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            match x % 7 {
                0..=2 => {
                    r.push_back(step);
                    d.push_back(step);
                }
                3 | 4 => assert_eq!(r.pop_front(), d.pop_front()),
                5 => assert_eq!(r.pop_back(), d.pop_back()),
                _ => {
                    if let Some(k) = (!d.is_empty()).then(|| x as usize % d.len()) {
                        r[k] += 1;
                        d[k] += 1;
                    }
                }
            }
            if step % 5000 == 4999 {
                r.clear();
                d.clear();
                assert!(!r.spilled(), "clear gives the heap block back");
            }
            spilled |= r.spilled();
            assert_eq!(r.len(), d.len());
            assert_eq!(r.front(), d.front());
            assert_eq!(r.back(), d.back());
            assert!(r.iter().eq(d.iter()));
        }
        assert!(spilled, "the test reached the heap");
    }

    #[test]
    fn partition_point_finds_the_first_that_fails() {
        let mut r: Ring<u32, 4> = Ring::default();
        for v in [5, 6, 7, 8] {
            r.push_back(v); // wrap the inline ring around its end
        }
        r.pop_front();
        r.pop_front();
        for v in [9, 10] {
            r.push_back(v);
        }
        assert!(!r.spilled());
        for (at, want) in [(0, 0), (7, 0), (8, 1), (10, 3), (11, 4)] {
            assert_eq!(r.partition_point(|&v| v < at), want, "first >= {at}");
        }
        for v in 11..40 {
            r.push_back(v);
        }
        assert_eq!(r.partition_point(|&v| v < 30), 23);
    }

    #[test]
    fn stays_inline_up_to_n() {
        let mut r: Ring<u64, 3> = Ring::default();
        for i in 0..3 {
            r.push_back(i);
        }
        assert!(!r.spilled());
        r.push_back(3);
        assert!(r.spilled());
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
    }
}
