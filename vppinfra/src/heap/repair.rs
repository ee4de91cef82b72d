//! Whole-heap checks: [`Heap::validate`]'s walk, and the repair that follows a dead lock owner.

use super::Heap;
use super::error::{CorruptionKind, Fail};
use super::layout::*;

/// One block found by a walk.
#[derive(Debug, Clone, Copy)]
struct Walked {
    off: u64,
    size: u64,
    state: State,
}

impl Heap {
    /// The header words that must hold fixed values.
    fn check_header_words(&self) -> Result<(), Fail> {
        if self.ld(H_MAGIC)? != MAGIC {
            return Err(Fail::corrupt(H_MAGIC, CorruptionKind::HeaderMagic));
        }
        if self.ld(H_VERSION)? != VERSION {
            return Err(Fail::corrupt(H_VERSION, CorruptionKind::HeaderVersion));
        }
        if self.ld(H_REGION_LEN)? != self.region.len() {
            return Err(Fail::corrupt(H_REGION_LEN, CorruptionKind::HeaderLayout));
        }
        if self.ld(H_ARENA_START)? != ARENA_START {
            return Err(Fail::corrupt(H_ARENA_START, CorruptionKind::HeaderLayout));
        }
        if self.ld(H_ARENA_END)? != self.fence + FENCE_SIZE {
            return Err(Fail::corrupt(H_ARENA_END, CorruptionKind::HeaderLayout));
        }
        Ok(())
    }

    /// Walks the blocks by their tags from the arena start to the fence. With `strict`, boundary
    /// tags must agree and coalesced free blocks must not touch; without, only the tiling
    /// (tags and sizes) must hold, which is all a repair needs.
    fn walk(&self, strict: bool) -> Result<Vec<Walked>, Fail> {
        let mut blocks = Vec::new();
        let mut off = ARENA_START;
        let mut prev: Option<Walked> = None;
        while off != self.fence {
            // Every block is at least MIN_BLOCK long, so this bounds the walk even if sizes lie.
            if blocks.len() as u64 >= self.max_blocks() {
                return Err(Fail::corrupt(off, CorruptionKind::BlockSize));
            }
            let block = self.read_block(off)?;
            if block.state == State::Absorbed {
                return Err(Fail::corrupt(off, CorruptionKind::BlockTag));
            }
            if strict {
                let expected_prev = prev.map_or(0, |p| p.size);
                if self.ld(off + B_PREV_SIZE)? != expected_prev {
                    return Err(Fail::corrupt(off, CorruptionKind::PrevSize));
                }
                if block.state == State::Free && prev.is_some_and(|p| p.state == State::Free) {
                    return Err(Fail::corrupt(off, CorruptionKind::AdjacentFree));
                }
                if block.state == State::Quick && quick_index(block.size).is_none() {
                    return Err(Fail::corrupt(off, CorruptionKind::BlockSize));
                }
            }
            let walked = Walked {
                off,
                size: block.size,
                state: block.state,
            };
            blocks.push(walked);
            prev = Some(walked);
            off += block.size;
        }
        if decode_tag(self.fence, self.ld(self.fence + B_TAG)?) != Some((FENCE_SIZE, State::Fence))
        {
            return Err(Fail::corrupt(self.fence, CorruptionKind::Fence));
        }
        if strict && self.ld(self.fence + B_PREV_SIZE)? != prev.map_or(0, |p| p.size) {
            return Err(Fail::corrupt(self.fence, CorruptionKind::PrevSize));
        }
        Ok(blocks)
    }

    /// The body of [`Heap::validate`], under the lock.
    pub(super) fn validate_locked(&self) -> Result<(), Fail> {
        self.check_header_words()?;
        let blocks = self.walk(true)?;
        let mut free_blocks = Vec::new();
        let mut quick_blocks = Vec::new();
        let (mut used, mut free, mut live) = (0u64, 0u64, 0u64);
        for b in &blocks {
            match b.state {
                State::Free => {
                    free_blocks.push(b.off);
                    free += b.size;
                }
                State::Quick => {
                    quick_blocks.push(b.off);
                    free += b.size;
                }
                _ => {
                    used += b.size;
                    live += 1;
                }
            }
        }

        // Bins: each list holds free blocks of its size range, linked both ways, and the bitmap
        // says which lists are non-empty.
        let mut listed = Vec::with_capacity(free_blocks.len());
        for k in 0..N_BINS {
            let head = self.ld(bin_head(k))?;
            let (map, bit) = bin_map_bit(k);
            if (head != 0) != (self.ld(map)? & bit != 0) {
                return Err(Fail::corrupt(map, CorruptionKind::BinMap));
            }
            let mut b = head;
            let mut back = 0;
            while b != 0 {
                if listed.len() >= free_blocks.len() {
                    return Err(Fail::corrupt(b, CorruptionKind::FreeListCycle));
                }
                let block = self.read_block(b)?;
                if block.state != State::Free || bin_index(block.size) != k {
                    return Err(Fail::corrupt(b, CorruptionKind::FreeListMember));
                }
                if self.ld(b + B_PREV)? != back {
                    return Err(Fail::corrupt(b, CorruptionKind::FreeLink));
                }
                listed.push(b);
                back = b;
                b = self.ld(b + B_NEXT)?;
            }
        }
        same_members(&free_blocks, listed)?;

        // Quick lists: singly linked, exact sizes.
        let mut listed = Vec::with_capacity(quick_blocks.len());
        for q in 0..N_QUICK {
            let mut b = self.ld(quick_head(q))?;
            while b != 0 {
                if listed.len() >= quick_blocks.len() {
                    return Err(Fail::corrupt(b, CorruptionKind::FreeListCycle));
                }
                let block = self.read_block(b)?;
                if block.state != State::Quick || block.size != quick_class_size(q) {
                    return Err(Fail::corrupt(b, CorruptionKind::FreeListMember));
                }
                listed.push(b);
                b = self.ld(b + B_NEXT)?;
            }
        }
        same_members(&quick_blocks, listed)?;

        if self.ld(H_BYTES_USED)? != used {
            return Err(Fail::corrupt(H_BYTES_USED, CorruptionKind::StatsBytes));
        }
        if self.ld(H_BYTES_FREE)? != free {
            return Err(Fail::corrupt(H_BYTES_FREE, CorruptionKind::StatsBytes));
        }
        if self.ld(H_N_LIVE)? != live {
            return Err(Fail::corrupt(H_N_LIVE, CorruptionKind::StatsCounts));
        }
        if self.ld(H_N_ALLOCS)?.wrapping_sub(self.ld(H_N_FREES)?) != live {
            return Err(Fail::corrupt(H_N_ALLOCS, CorruptionKind::StatsCounts));
        }
        Ok(())
    }

    /// Repairs the heap after a lock owner died in the middle of an operation, then validates
    /// it. Everything but the tiling is derived data: boundary tags, lists, bitmap, quick lists
    /// (their blocks are coalesced) and statistics are rebuilt from the walk.
    pub(super) fn recover(&self) -> Result<(), Fail> {
        self.check_header_words()?;
        let blocks = self.walk(false)?;
        for k in 0..N_BINS {
            self.st(bin_head(k), 0)?;
        }
        for q in 0..N_QUICK {
            self.st(quick_head(q), 0)?;
        }
        self.st(H_BIN_MAP, 0)?;
        self.st(H_BIN_MAP + 8, 0)?;
        let (mut used, mut free, mut live) = (0u64, 0u64, 0u64);
        let mut prev_size = 0;
        let mut i = 0;
        while i < blocks.len() {
            let first = blocks[i];
            if first.state.is_free() {
                // Merge the run of free blocks that starts here into one.
                let mut total = first.size;
                let mut j = i + 1;
                while j < blocks.len() && blocks[j].state.is_free() {
                    total += blocks[j].size;
                    j += 1;
                }
                self.st(first.off + B_PREV_SIZE, prev_size)?;
                self.st(first.off + B_TAG, make_tag(first.off, total, State::Free))?;
                for absorbed in &blocks[i + 1..j] {
                    self.st(
                        absorbed.off + B_TAG,
                        make_tag(absorbed.off, absorbed.size, State::Absorbed),
                    )?;
                }
                self.bin_insert(first.off, total)?;
                free += total;
                prev_size = total;
                i = j;
            } else {
                self.st(first.off + B_PREV_SIZE, prev_size)?;
                used += first.size;
                live += 1;
                prev_size = first.size;
                i += 1;
            }
        }
        self.st(self.fence + B_PREV_SIZE, prev_size)?;
        self.st(H_BYTES_USED, used)?;
        self.st(H_BYTES_FREE, free)?;
        self.st(H_N_LIVE, live)?;
        // The dead owner may have stopped between its block change and its counter update, so
        // the free counter is re-based to keep `allocs - frees == live`.
        let allocs = self.ld(H_N_ALLOCS)?.max(live);
        self.st(H_N_ALLOCS, allocs)?;
        self.st(H_N_FREES, allocs - live)?;
        self.validate_locked()?;
        let flags = self.ld(H_FLAGS)?;
        self.st(H_FLAGS, flags & !FLAG_NEEDS_RECOVERY)?;
        self.add(H_N_RECOVERIES, 1)
    }
}

/// Checks that `listed` (in list order) holds exactly the blocks of `walked` (ascending), and
/// names the first difference: a walked block missing from the lists, or a listed offset that no
/// walk reached (a forged header inside another block).
fn same_members(walked: &[u64], mut listed: Vec<u64>) -> Result<(), Fail> {
    listed.sort_unstable();
    if let Some(w) = listed.windows(2).find(|w| w[0] == w[1]) {
        return Err(Fail::corrupt(w[0], CorruptionKind::FreeListCycle));
    }
    let mut i = 0;
    loop {
        match (walked.get(i), listed.get(i)) {
            (Some(w), Some(l)) if w == l => i += 1,
            (Some(w), Some(l)) if l < w => {
                return Err(Fail::corrupt(*l, CorruptionKind::FreeListMember));
            }
            (Some(w), _) => return Err(Fail::corrupt(*w, CorruptionKind::FreeBlockUnlisted)),
            (None, Some(l)) => return Err(Fail::corrupt(*l, CorruptionKind::FreeListMember)),
            (None, None) => return Ok(()),
        }
    }
}
