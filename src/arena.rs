//! Items of variable length (a header's keys, its shapes) kept one after another in blocks that
//! are never grown or moved: a growing `Vec` holds up to twice its contents and, while it moves,
//! three times, which a header made of many entries would turn into its peak memory.

/// The most items in one block (4 KiB of text, 32 KiB of dimensions), which bounds the spare room
/// at the end; a longer item gets a block of its own.
const BLOCK_MAX: usize = 1 << 12;
/// The most blocks: what the upper 16 bits of a slot's position can name (a 100 MB header needs
/// at most 25 000).
const MAX_BLOCKS: usize = 1 << 16;
/// The items of the first block.
const BLOCK_MIN: usize = 64;

/// Where an item is: its block and its first item in that block, then its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    at: u32,
    len: u32,
}

/// An append-only list of slices of `T`, each kept whole in one block.
#[derive(Debug)]
pub(crate) struct Arena<T> {
    blocks: Vec<Vec<T>>,
    /// Items in all blocks: the next block is as large (within the bounds), so that the blocks'
    /// spare room stays below the contents, as a doubling `Vec`'s does.
    total: usize,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Arena {
            blocks: Vec::new(),
            total: 0,
        }
    }
}

impl<T: Copy> Arena<T> {
    /// Appends `items`; `None` once the arena holds more blocks than a slot can name (far more
    /// than a 100 MB header needs).
    pub(crate) fn push(&mut self, items: &[T]) -> Option<Slot> {
        let len = u32::try_from(items.len()).ok()?;
        let fits = |block: &Vec<T>| block.capacity() - block.len() >= items.len() && block.len() < BLOCK_MAX;
        if !self.blocks.last().is_some_and(fits) {
            let size = self.total.clamp(BLOCK_MIN, BLOCK_MAX).max(items.len());
            if self.blocks.len() >= MAX_BLOCKS {
                return None;
            }
            self.blocks.push(Vec::with_capacity(size));
        }
        let index = self.blocks.len() - 1;
        let block = &mut self.blocks[index];
        // Within a block of at most `BLOCK_MAX` items the offset fits its 16 bits; a longer item
        // is alone, at offset 0.
        let at = ((index as u32) << 16) | block.len() as u32;
        block.extend_from_slice(items);
        self.total += items.len();
        Some(Slot { at, len })
    }

    /// The items at `slot`, which this arena gave.
    pub(crate) fn get(&self, slot: Slot) -> &[T] {
        let (block, start) = ((slot.at >> 16) as usize, (slot.at & 0xffff) as usize);
        &self.blocks[block][start..start + slot.len as usize]
    }
}

impl Arena<u8> {
    /// Appends `text`.
    pub(crate) fn push_str(&mut self, text: &str) -> Option<Slot> {
        self.push(text.as_bytes())
    }

    /// The text at `slot`, pushed by [`Arena::push_str`].
    pub(crate) fn get_str(&self, slot: Slot) -> &str {
        std::str::from_utf8(self.get(slot)).expect("pushed as text")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_back_whole_across_blocks_and_long_ones_alone() {
        let mut arena = Arena::default();
        let mut slots = vec![arena.push(&[1u32, 2, 3]).unwrap()];
        let mut expected = vec![vec![1, 2, 3]];
        let first_block = arena.blocks[0].as_ptr();
        for i in 0..20_000u32 {
            let len = if i % 5_000 == 7 { BLOCK_MAX as u32 + 3 } else { i % 9 };
            let items: Vec<u32> = (0..len).map(|j| i ^ j).collect();
            slots.push(arena.push(&items).unwrap());
            expected.push(items);
        }
        for (slot, items) in slots.iter().zip(&expected) {
            assert_eq!(arena.get(*slot), &items[..]);
        }
        // A block is never grown, so never moved.
        assert_eq!(arena.blocks[0].as_ptr(), first_block);
        let spare: usize = arena.blocks.iter().map(|b| b.capacity() - b.len()).sum();
        assert!(spare <= arena.total, "{spare} spare for {}", arena.total);
    }

    #[test]
    fn text_round_trips() {
        let mut arena = Arena::default();
        let a = arena.push_str("layers_0.kernel").unwrap();
        let b = arena.push_str("").unwrap();
        let c = arena.push_str("ünïcode").unwrap();
        assert_eq!(
            (arena.get_str(a), arena.get_str(b), arena.get_str(c)),
            ("layers_0.kernel", "", "ünïcode")
        );
    }
}
