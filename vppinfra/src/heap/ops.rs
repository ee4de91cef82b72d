//! The allocator proper: block surgery, quick lists and bins. Everything here runs under the heap
//! lock and treats every word it reads as untrusted.
//!
//! Crash consistency: the walk over blocks (by tag sizes from the arena start) is the source of
//! truth that repair rebuilds everything else from. Each change of a block's extent is therefore
//! made visible by a single tag store, after the headers it uncovers have been written, so a
//! process that dies between any two stores leaves a walk that still tiles the arena. Boundary
//! tags, lists, bitmap and statistics may be left stale; repair recomputes them.

use super::error::{CorruptionKind, Fail};
use super::layout::*;
use super::{Block, Heap};

impl Heap {
    /// Reads the header of a block that a trusted root (a list, a neighbour) pointed to. Anything
    /// inconsistent is corruption.
    #[inline]
    pub(super) fn read_block(&self, off: u64) -> Result<Block, Fail> {
        if !self.plausible_block(off) {
            return Err(Fail::corrupt(off, CorruptionKind::BlockBounds));
        }
        let Some((size, state)) = decode_tag(off, self.ld(off + B_TAG)?) else {
            return Err(Fail::corrupt(off, CorruptionKind::BlockTag));
        };
        if state == State::Fence {
            return Err(Fail::corrupt(off, CorruptionKind::BlockTag));
        }
        if size < MIN_BLOCK || size > self.fence - off {
            return Err(Fail::corrupt(off, CorruptionKind::BlockSize));
        }
        Ok(Block { size, state })
    }

    /// True when a block header at `off` would lie inside the arena.
    #[inline]
    pub(super) fn plausible_block(&self, off: u64) -> bool {
        off >= ARENA_START
            && off < self.fence
            && off % GRANULE == 0
            && self.fence - off >= MIN_BLOCK
    }

    /// Validates a caller's payload offset and returns its block `(offset, size)`. Inconsistency
    /// here is blamed on the argument (`NotAllocated`), not on the heap: the offset may be
    /// interior, foreign, or the stale header of a block that was merged away during a crash.
    #[inline]
    pub(super) fn live_block(&self, payload: u64) -> Result<(u64, u64), Fail> {
        if !self.payload_in_range(payload) {
            return Err(Fail::OutOfRange);
        }
        if payload % GRANULE != 0 {
            return Err(Fail::NotAllocated);
        }
        let b = payload - BLOCK_HEADER;
        let Some((size, state)) = decode_tag(b, self.ld(b + B_TAG)?) else {
            return Err(Fail::NotAllocated);
        };
        match state {
            State::InUse => {}
            State::Free | State::Quick | State::Absorbed => return Err(Fail::NotLive),
            State::Fence => return Err(Fail::NotAllocated),
        }
        if size < MIN_BLOCK || size > self.fence - b {
            return Err(Fail::NotAllocated);
        }
        // The right neighbour must be a real block (or the fence) whose boundary tag names us.
        let n = b + size;
        match decode_tag(n, self.ld(n + B_TAG)?) {
            Some((_, State::Fence)) if n == self.fence => {}
            Some((_, State::InUse | State::Free | State::Quick)) if n != self.fence => {}
            _ => return Err(Fail::NotAllocated),
        }
        if self.ld(n + B_PREV_SIZE)? != size {
            return Err(Fail::NotAllocated);
        }
        // The left boundary tag must at least be plausible. The left block itself is not read,
        // which keeps the fast path short: the check bits and the right neighbour already make a
        // forged or stale header unlikely to pass.
        let prev_size = self.ld(b + B_PREV_SIZE)?;
        if (prev_size == 0) != (b == ARENA_START) || prev_size > b - ARENA_START {
            return Err(Fail::NotAllocated);
        }
        Ok((b, size))
    }

    /// Allocates a block for `size` payload bytes aligned to `align` (>= 16) and returns the
    /// payload offset. Updates the byte statistics; the caller updates the counters.
    #[inline]
    pub(super) fn alloc_block(&self, size: u64, align: u64) -> Result<u64, Fail> {
        let want = block_size_for(size);
        let (block, used) = if align <= GRANULE {
            match quick_index(want) {
                Some(q) if self.ld(quick_head(q))? != 0 => {
                    let b = self.quick_pop(q)?;
                    self.st(b + B_TAG, make_tag(b, want, State::InUse))?;
                    (b, want)
                }
                _ => {
                    let (b, have) = self.take_free(want)?;
                    (b, self.carve(b, have, want)?)
                }
            }
        } else {
            let (f, have) = self.take_free(want + align + MIN_BLOCK)?;
            let payload = (f + BLOCK_HEADER + align - 1) & !(align - 1);
            let mut lead = payload - BLOCK_HEADER - f;
            if lead != 0 && lead < MIN_BLOCK {
                lead += align;
            }
            if lead == 0 {
                (f, self.carve(f, have, want)?)
            } else {
                let b = f + lead;
                let rest = have - lead;
                // The new header first (invisible until the lead shrinks), then its right
                // neighbour's boundary tag, then the switch.
                self.st(b + B_PREV_SIZE, lead)?;
                self.st(b + B_TAG, make_tag(b, rest, State::Free))?;
                self.st(b + rest + B_PREV_SIZE, rest)?;
                self.st(f + B_TAG, make_tag(f, lead, State::Free))?;
                self.bin_insert(f, lead)?;
                (b, self.carve(b, rest, want)?)
            }
        };
        self.sub(H_BYTES_FREE, used)?;
        self.add(H_BYTES_USED, used)?;
        Ok(block + BLOCK_HEADER)
    }

    /// Returns an in-use block to the free pool: a quick list for small sizes, the bins (after
    /// coalescing) otherwise. Updates the byte statistics.
    #[inline]
    pub(super) fn release_block(&self, b: u64, size: u64) -> Result<(), Fail> {
        self.sub(H_BYTES_USED, size)?;
        self.add(H_BYTES_FREE, size)?;
        match quick_index(size) {
            Some(q) => self.quick_push(q, b),
            None => self.coalesce_insert(b, size),
        }
    }

    /// Resizes the live allocation at `payload`; see [`Heap::realloc`].
    pub(super) fn realloc_block(&self, payload: u64, size: u64, align: u64) -> Result<u64, Fail> {
        let (b, have) = self.live_block(payload)?;
        let want = block_size_for(size);
        if payload % align == 0 {
            if want <= have {
                if have - want >= MIN_BLOCK {
                    let r = b + want;
                    let rest = have - want;
                    self.st(r + B_PREV_SIZE, want)?;
                    self.st(r + B_TAG, make_tag(r, rest, State::Free))?;
                    self.st(r + rest + B_PREV_SIZE, rest)?;
                    self.st(b + B_TAG, make_tag(b, want, State::InUse))?;
                    self.sub(H_BYTES_USED, rest)?;
                    self.add(H_BYTES_FREE, rest)?;
                    self.coalesce_insert(r, rest)?;
                }
                return Ok(payload);
            }
            let n = b + have;
            if n != self.fence {
                let next = self.read_block(n)?;
                if next.state == State::Free && have + next.size >= want {
                    self.bin_unlink(n, next.size)?;
                    let total = have + next.size;
                    let grown = if total - want >= MIN_BLOCK {
                        let r = b + want;
                        let rest = total - want;
                        self.st(r + B_PREV_SIZE, want)?;
                        self.st(r + B_TAG, make_tag(r, rest, State::Free))?;
                        self.st(r + rest + B_PREV_SIZE, rest)?;
                        self.st(b + B_TAG, make_tag(b, want, State::InUse))?;
                        if r != n {
                            self.st(n + B_TAG, make_tag(n, next.size, State::Absorbed))?;
                        }
                        self.bin_insert(r, rest)?;
                        want
                    } else {
                        self.st(b + total + B_PREV_SIZE, total)?;
                        self.st(b + B_TAG, make_tag(b, total, State::InUse))?;
                        self.st(n + B_TAG, make_tag(n, next.size, State::Absorbed))?;
                        total
                    };
                    self.add(H_BYTES_USED, grown - have)?;
                    self.sub(H_BYTES_FREE, grown - have)?;
                    return Ok(payload);
                }
            }
        }
        let moved = self.alloc_block(size, align)?;
        // Both payloads are 16-aligned and hold at least this many bytes (the new block is at
        // least `want`), so whole words cover them. The new block's tag is not re-read: a peer
        // could have changed it since.
        let n_bytes = have.min(want) - BLOCK_HEADER;
        let mut i = 0;
        while i < n_bytes {
            let w = self.ld(payload + i)?;
            self.st(moved + i, w)?;
            i += 8;
        }
        self.release_block(b, have)?;
        Ok(moved)
    }

    /// Pops the head of quick list `q` (which the caller saw non-empty). The block keeps its
    /// `Quick` tag; the caller retags it.
    #[inline]
    fn quick_pop(&self, q: usize) -> Result<u64, Fail> {
        let head = quick_head(q);
        let b = self.ld(head)?;
        let block = self.read_block(b)?;
        if block.state != State::Quick || block.size != quick_class_size(q) {
            return Err(Fail::corrupt(b, CorruptionKind::FreeListMember));
        }
        let next = self.ld(b + B_NEXT)?;
        if next != 0 && !self.plausible_block(next) {
            return Err(Fail::corrupt(b, CorruptionKind::FreeLink));
        }
        self.st(head, next)?;
        Ok(b)
    }

    /// Pushes block `b` onto quick list `q`.
    #[inline]
    fn quick_push(&self, q: usize, b: u64) -> Result<(), Fail> {
        let head = quick_head(q);
        self.st(b + B_NEXT, self.ld(head)?)?;
        self.st(b + B_TAG, make_tag(b, quick_class_size(q), State::Quick))?;
        self.st(head, b)
    }

    /// Links free block `b` of `size` bytes at the head of its bin.
    pub(super) fn bin_insert(&self, b: u64, size: u64) -> Result<(), Fail> {
        let k = bin_index(size);
        let head_off = bin_head(k);
        let head = self.ld(head_off)?;
        self.st(b + B_NEXT, head)?;
        self.st(b + B_PREV, 0)?;
        if head != 0 {
            let old = self.read_block(head)?;
            if old.state != State::Free || bin_index(old.size) != k {
                return Err(Fail::corrupt(head, CorruptionKind::FreeListMember));
            }
            self.st(head + B_PREV, b)?;
        }
        self.st(head_off, b)?;
        let (map, bit) = bin_map_bit(k);
        let m = self.ld(map)?;
        self.st(map, m | bit)
    }

    /// Unlinks free block `b` of `size` bytes from its bin, after checking that both neighbours
    /// in the list point back at it.
    pub(super) fn bin_unlink(&self, b: u64, size: u64) -> Result<(), Fail> {
        let k = bin_index(size);
        let head_off = bin_head(k);
        let next = self.ld(b + B_NEXT)?;
        let prev = self.ld(b + B_PREV)?;
        if prev == 0 {
            if self.ld(head_off)? != b {
                return Err(Fail::corrupt(b, CorruptionKind::FreeLink));
            }
        } else if !self.plausible_block(prev) || self.ld(prev + B_NEXT)? != b {
            return Err(Fail::corrupt(b, CorruptionKind::FreeLink));
        }
        if next != 0 && (!self.plausible_block(next) || self.ld(next + B_PREV)? != b) {
            return Err(Fail::corrupt(b, CorruptionKind::FreeLink));
        }
        if prev == 0 {
            self.st(head_off, next)?;
            if next == 0 {
                let (map, bit) = bin_map_bit(k);
                let m = self.ld(map)?;
                self.st(map, m & !bit)?;
            }
        } else {
            self.st(prev + B_NEXT, next)?;
        }
        if next != 0 {
            self.st(next + B_PREV, prev)?;
        }
        Ok(())
    }

    /// The first non-empty bin at or above `from`, by the bitmap.
    fn next_bin(&self, from: usize) -> Result<Option<usize>, Fail> {
        let mut k = from;
        while k < N_BINS {
            let (map, _) = bin_map_bit(k);
            let bits = self.ld(map)? >> (k % 64);
            if bits != 0 {
                return Ok(Some(k + bits.trailing_zeros() as usize));
            }
            k = (k / 64 + 1) * 64;
        }
        Ok(None)
    }

    /// Finds and unlinks a coalesced free block of at least `need` bytes: first fit among the
    /// first blocks of `need`'s own bin, else the head of the next non-empty bin.
    fn find_free(&self, need: u64) -> Result<Option<(u64, u64)>, Fail> {
        let k = bin_index(need);
        let higher = if k + 1 < N_BINS {
            self.next_bin(k + 1)?
        } else {
            None
        };
        let limit = if higher.is_some() {
            SCAN_LIMIT
        } else {
            self.max_blocks()
        };
        let mut b = self.ld(bin_head(k))?;
        let mut steps = 0;
        while b != 0 {
            if steps >= limit {
                if higher.is_none() {
                    return Err(Fail::corrupt(bin_head(k), CorruptionKind::FreeListCycle));
                }
                break;
            }
            let block = self.read_block(b)?;
            if block.state != State::Free || bin_index(block.size) != k {
                return Err(Fail::corrupt(b, CorruptionKind::FreeListMember));
            }
            if block.size >= need {
                self.bin_unlink(b, block.size)?;
                return Ok(Some((b, block.size)));
            }
            b = self.ld(b + B_NEXT)?;
            steps += 1;
        }
        let Some(j) = higher else {
            return Ok(None);
        };
        let b = self.ld(bin_head(j))?;
        if b == 0 {
            return Err(Fail::corrupt(bin_map_bit(j).0, CorruptionKind::BinMap));
        }
        let block = self.read_block(b)?;
        if block.state != State::Free || bin_index(block.size) != j || block.size < need {
            return Err(Fail::corrupt(b, CorruptionKind::FreeListMember));
        }
        self.bin_unlink(b, block.size)?;
        Ok(Some((b, block.size)))
    }

    /// [`find_free`](Heap::find_free), coalescing the quick lists and retrying before giving up.
    fn take_free(&self, need: u64) -> Result<(u64, u64), Fail> {
        if let Some(found) = self.find_free(need)? {
            return Ok(found);
        }
        if self.consolidate()? {
            if let Some(found) = self.find_free(need)? {
                return Ok(found);
            }
        }
        Err(Fail::OutOfMemory)
    }

    /// Turns the unlinked free block `b` of `have` bytes into an in-use block of `want` bytes,
    /// splitting off the tail as a free block when it is big enough. Returns the in-use size.
    fn carve(&self, b: u64, have: u64, want: u64) -> Result<u64, Fail> {
        if have - want < MIN_BLOCK {
            self.st(b + B_TAG, make_tag(b, have, State::InUse))?;
            return Ok(have);
        }
        let r = b + want;
        let rest = have - want;
        self.st(r + B_PREV_SIZE, want)?;
        self.st(r + B_TAG, make_tag(r, rest, State::Free))?;
        self.st(r + rest + B_PREV_SIZE, rest)?;
        self.st(b + B_TAG, make_tag(b, want, State::InUse))?;
        // `b` was a coalesced free block, so its right neighbour is not free: no merge needed.
        self.bin_insert(r, rest)?;
        Ok(want)
    }

    /// Frees block `b` of `size` bytes into the bins, merging it with free neighbours.
    pub(super) fn coalesce_insert(&self, b: u64, size: u64) -> Result<(), Fail> {
        let mut start = b;
        let mut total = size;
        let n = b + size;
        let mut absorbed_next = None;
        if n != self.fence {
            let next = self.read_block(n)?;
            if next.state == State::Free {
                self.bin_unlink(n, next.size)?;
                total += next.size;
                absorbed_next = Some((n, next.size));
            }
        }
        let prev_size = self.ld(b + B_PREV_SIZE)?;
        if prev_size != 0 {
            if prev_size > b - ARENA_START {
                return Err(Fail::corrupt(b, CorruptionKind::PrevSize));
            }
            let p = b - prev_size;
            let prev = self.read_block(p)?;
            if prev.size != prev_size {
                return Err(Fail::corrupt(b, CorruptionKind::PrevSize));
            }
            if prev.state == State::Free {
                self.bin_unlink(p, prev_size)?;
                start = p;
                total += prev_size;
            }
        } else if b != ARENA_START {
            return Err(Fail::corrupt(b, CorruptionKind::PrevSize));
        }
        self.st(start + total + B_PREV_SIZE, total)?;
        self.st(start + B_TAG, make_tag(start, total, State::Free))?;
        if start != b {
            self.st(b + B_TAG, make_tag(b, size, State::Absorbed))?;
        }
        if let Some((n, n_size)) = absorbed_next {
            self.st(n + B_TAG, make_tag(n, n_size, State::Absorbed))?;
        }
        self.bin_insert(start, total)
    }

    /// Moves every quick block into the bins, coalescing. Returns whether there were any.
    fn consolidate(&self) -> Result<bool, Fail> {
        let mut budget = self.max_blocks();
        let mut moved = false;
        for q in 0..N_QUICK {
            while self.ld(quick_head(q))? != 0 {
                if budget == 0 {
                    return Err(Fail::corrupt(quick_head(q), CorruptionKind::FreeListCycle));
                }
                budget -= 1;
                let b = self.quick_pop(q)?;
                self.coalesce_insert(b, quick_class_size(q))?;
                moved = true;
            }
        }
        Ok(moved)
    }

    /// The largest free block (bytes, header included) that an allocation could take without
    /// consolidating: the biggest of the highest non-empty bin and the highest non-empty quick
    /// list. Best effort: stops at the first inconsistency.
    pub(super) fn largest_free(&self) -> u64 {
        let mut best = 0;
        for q in (0..N_QUICK).rev() {
            if self.ld(quick_head(q)).is_ok_and(|h| h != 0) {
                best = quick_class_size(q);
                break;
            }
        }
        let top = (0..N_BINS)
            .rev()
            .find(|&k| self.ld(bin_head(k)).is_ok_and(|h| h != 0));
        if let Some(k) = top {
            let mut b = self.ld(bin_head(k)).unwrap_or(0);
            let mut steps = 0;
            while b != 0 && steps < self.max_blocks() {
                match self.read_block(b) {
                    Ok(block) if block.state == State::Free => best = best.max(block.size),
                    _ => break,
                }
                b = self.ld(b + B_NEXT).unwrap_or(0);
                steps += 1;
            }
        }
        best
    }
}
